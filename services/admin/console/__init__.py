"""The web console: the Status page, the Cache browser and the Config screen of ``mcsync serve``.

Server-rendered pages on the admin actions (``services.admin.registry``): a form is parsed
by the action's own parameter model, so the console, the API and the CLI take one path.
Design notes: docs/console.md.
"""
