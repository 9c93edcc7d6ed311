"""The CRM the sync works with: CiviCRM on MySQL/MariaDB (``civicrm``), or the embedded tables."""
