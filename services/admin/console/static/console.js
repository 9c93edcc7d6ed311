// The Status page's live part: every card's progress is swapped in from /status/live, every
// 2 s while a sync runs (or has changes at Mailchimp) and for a while after the page loads,
// every 10 s otherwise; when the work ends, the page reloads for fresh counts. Everything
// works without it (reload the page).
(function () {
  "use strict";
  const cards = document.querySelector("[data-live-cards]");
  if (!cards) return;
  let active = cards.querySelector("[data-active]") !== null;
  const eager = Date.now() + 20000; // a sync just started may not have begun yet

  function later() {
    setTimeout(tick, active || Date.now() < eager ? 2000 : 10000);
  }

  async function tick() {
    if (document.hidden) return later();
    try {
      const reply = await fetch("/status/live", { headers: { accept: "application/json" } });
      if (reply.status === 401) {
        window.location.assign("/signin");
        return;
      }
      if (reply.ok) {
        const now = await reply.json();
        for (const [listId, html] of Object.entries(now.cards)) {
          const live = document.getElementById("live-" + listId);
          if (live) {
            const open = live.querySelector("details.log")?.open;
            live.innerHTML = html;
            const log = live.querySelector("details.log");
            if (log && open !== undefined) log.open = open;
            const state = live.querySelector("[data-state]");
            if (state) live.closest(".card").className = "card state-" + state.dataset.state;
          }
        }
        if (active && !now.active) {
          window.location.reload();
          return;
        }
        active = now.active;
      }
    } catch (error) {
      // The server is restarting or the network is down: try again later.
    }
    later();
  }

  later();
})();
