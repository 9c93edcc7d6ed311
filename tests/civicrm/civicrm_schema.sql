-- CiviCRM 6.9.alpha1 (civicrm/civicrm-core, schema/...entityType.php), written for the mcsync tests
--
-- Source: civicrm/civicrm-core master, schema/Contact/Contact.entityType.php @ c8836b88
-- (xml/version.xml there: 6.9.alpha1; the newest tagged release seen is 6.8.0, 2025-11-05),
-- schema/Core/Email.entityType.php @ db3d98b9, schema/Contact/Group.entityType.php and
-- SavedSearch.entityType.php @ 41dd4b97, schema/Contact/GroupContact.entityType.php and
-- SubscriptionHistory.entityType.php @ fdd17c42. Newest 'add' among these fields: 5.81.
--
-- Column/index/FK text follows CiviCRM's own generator (mixin/lib/civimix-schema/src/SqlGenerator.php):
--   * `required` => NOT NULL, otherwise an explicit NULL;
--   * 'boolean' fields are written `boolean NOT NULL DEFAULT FALSE|TRUE` (MariaDB stores tinyint(1));
--   * default 'CURRENT_TIMESTAMP...' is written unquoted; other string defaults quoted;
--   * indexes are named as the getIndices() keys; FKs are `FK_<table>_<column>`, added by
--     ALTER TABLE after all tables exist, with ON DELETE only when 'on_delete' is given;
--   * table options: ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC.
-- civicrm_email.location_type_id has no entity_reference in CiviCRM (pseudoconstant only), so no FK
-- to civicrm_location_type; contact_type likewise has no FK to civicrm_contact_type.
--
-- Tables: civicrm_contact, civicrm_email, civicrm_group, civicrm_group_contact,
-- civicrm_subscription_history, civicrm_saved_search (full definition; referenced by civicrm_group),
-- plus stand-ins (id only): civicrm_mapping (referenced by civicrm_saved_search),
-- civicrm_loc_block (referenced by civicrm_group_contact.location_id).

SET FOREIGN_KEY_CHECKS=0;
DROP TABLE IF EXISTS `civicrm_subscription_history`;
DROP TABLE IF EXISTS `civicrm_group_contact`;
DROP TABLE IF EXISTS `civicrm_group`;
DROP TABLE IF EXISTS `civicrm_saved_search`;
DROP TABLE IF EXISTS `civicrm_email`;
DROP TABLE IF EXISTS `civicrm_contact`;
DROP TABLE IF EXISTS `civicrm_loc_block`;
DROP TABLE IF EXISTS `civicrm_mapping`;
SET FOREIGN_KEY_CHECKS=1;

-- Stand-in: the real civicrm_mapping (schema/Core/Mapping.entityType.php) has more columns.
CREATE TABLE `civicrm_mapping` (
  `id` int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

-- Stand-in: the real civicrm_loc_block (schema/Core/LocBlock.entityType.php) also has
-- address_id/email_id/phone_id/im_id/address_2_id/email_2_id/phone_2_id/im_2_id, FKs to
-- civicrm_address/civicrm_email/civicrm_phone/civicrm_im ON DELETE SET NULL.
CREATE TABLE `civicrm_loc_block` (
  `id` int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_contact` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Unique Contact ID',
  `contact_type` varchar(64) NULL COMMENT 'Type of Contact.',
  `external_identifier` varchar(64) NULL COMMENT 'Unique trusted external ID (generally from a legacy app/datasource). Particularly useful for deduping operations.',
  `display_name` varchar(128) NULL COMMENT 'Formatted name representing preferred format for display/print/other output.',
  `organization_name` varchar(128) NULL COMMENT 'Organization Name.',
  `contact_sub_type` varchar(255) NULL COMMENT 'May be used to over-ride contact view and edit templates.',
  `first_name` varchar(64) NULL COMMENT 'First Name.',
  `middle_name` varchar(64) NULL COMMENT 'Middle Name.',
  `last_name` varchar(64) NULL COMMENT 'Last Name.',
  `do_not_email` boolean NOT NULL DEFAULT FALSE,
  `do_not_phone` boolean NOT NULL DEFAULT FALSE,
  `do_not_mail` boolean NOT NULL DEFAULT FALSE,
  `do_not_sms` boolean NOT NULL DEFAULT FALSE,
  `do_not_trade` boolean NOT NULL DEFAULT FALSE,
  `is_opt_out` boolean NOT NULL DEFAULT FALSE COMMENT 'Has the contact opted out from receiving all bulk email from the organization or site domain?',
  `legal_identifier` varchar(32) NULL COMMENT 'May be used for SSN, EIN/TIN, Household ID (census) or other applicable unique legal/government ID.',
  `sort_name` varchar(128) NULL COMMENT 'Name used for sorting different contact types',
  `nick_name` varchar(128) NULL COMMENT 'Nickname.',
  `legal_name` varchar(128) NULL COMMENT 'Legal Name.',
  `image_URL` text NULL COMMENT 'optional URL for preferred image (photo, logo, etc.) to display for this contact.',
  `preferred_communication_method` varchar(255) NULL COMMENT 'What is the preferred mode of communication.',
  `preferred_language` varchar(5) NULL COMMENT 'Which language is preferred for communication. FK to languages in civicrm_option_value.',
  `hash` varchar(32) NULL COMMENT 'Key for validating requests related to this contact.',
  `api_key` varchar(32) NULL COMMENT 'API Key for validating requests related to this contact.',
  `source` varchar(255) NULL COMMENT 'where contact come from, e.g. import, donate module insert...',
  `prefix_id` int unsigned NULL COMMENT 'Prefix or Title for name (Ms, Mr...). FK to prefix ID',
  `suffix_id` int unsigned NULL COMMENT 'Suffix for name (Jr, Sr...). FK to suffix ID',
  `formal_title` varchar(64) NULL COMMENT 'Formal (academic or similar) title in front of name. (Prof., Dr. etc.)',
  `communication_style_id` int unsigned NULL COMMENT 'Communication style (e.g. formal vs. familiar) to use with this contact. FK to communication styles in civicrm_option_value.',
  `email_greeting_id` int unsigned NULL COMMENT 'FK to civicrm_option_value.id, that has to be valid registered Email Greeting.',
  `email_greeting_custom` varchar(128) NULL COMMENT 'Custom Email Greeting.',
  `email_greeting_display` varchar(255) NULL COMMENT 'Cache Email Greeting.',
  `postal_greeting_id` int unsigned NULL COMMENT 'FK to civicrm_option_value.id, that has to be valid registered Postal Greeting.',
  `postal_greeting_custom` varchar(128) NULL COMMENT 'Custom Postal greeting.',
  `postal_greeting_display` varchar(255) NULL COMMENT 'Cache Postal greeting.',
  `addressee_id` int unsigned NULL COMMENT 'FK to civicrm_option_value.id, that has to be valid registered Addressee.',
  `addressee_custom` varchar(128) NULL COMMENT 'Custom Addressee.',
  `addressee_display` varchar(255) NULL COMMENT 'Cache Addressee.',
  `job_title` varchar(255) NULL COMMENT 'Job Title',
  `gender_id` int unsigned NULL COMMENT 'FK to gender ID',
  `birth_date` date NULL COMMENT 'Date of birth',
  `is_deceased` boolean NOT NULL DEFAULT FALSE,
  `deceased_date` date NULL COMMENT 'Date deceased / closed',
  `household_name` varchar(128) NULL COMMENT 'Household Name.',
  `primary_contact_id` int unsigned NULL COMMENT 'Optional FK to Primary Contact for this household.',
  `sic_code` varchar(8) NULL COMMENT 'Standard Industry Classification Code.',
  `user_unique_id` varchar(255) NULL COMMENT 'the OpenID (or OpenID-style http://username.domain/) unique identifier for this contact mainly used for logging in to CiviCRM',
  `employer_id` int unsigned NULL COMMENT 'OPTIONAL FK to civicrm_contact record.',
  `is_deleted` boolean NOT NULL DEFAULT FALSE,
  `created_date` timestamp NULL DEFAULT NULL COMMENT 'When was the contact was created.',
  `modified_date` timestamp NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP COMMENT 'When was the contact (or closely related entity) was created or modified or deleted.',
  `preferred_mail_format` varchar(8) NULL DEFAULT 'Both' COMMENT 'Deprecated setting for text vs html mailings',
  PRIMARY KEY (`id`),
  INDEX `index_contact_type`(`contact_type`),
  UNIQUE INDEX `UI_external_identifier`(`external_identifier`),
  INDEX `index_organization_name`(`organization_name`),
  INDEX `index_contact_sub_type`(`contact_sub_type`),
  INDEX `index_first_name`(`first_name`),
  INDEX `index_last_name`(`last_name`),
  INDEX `index_sort_name`(`sort_name`),
  INDEX `index_preferred_communication_method`(`preferred_communication_method`),
  INDEX `index_hash`(`hash`),
  INDEX `index_api_key`(`api_key`),
  INDEX `UI_prefix`(`prefix_id`),
  INDEX `UI_suffix`(`suffix_id`),
  INDEX `index_communication_style_id`(`communication_style_id`),
  INDEX `UI_gender`(`gender_id`),
  INDEX `index_is_deceased`(`is_deceased`),
  INDEX `index_household_name`(`household_name`),
  INDEX `index_is_deleted_sort_name`(`is_deleted`, `sort_name`, `id`),
  INDEX `index_created_date`(`created_date`),
  INDEX `index_modified_date`(`modified_date`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_email` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Unique Email ID',
  `contact_id` int unsigned NULL COMMENT 'FK to Contact ID',
  `location_type_id` int unsigned NULL COMMENT 'Which Location does this email belong to.',
  `email` varchar(254) NULL COMMENT 'Email address',
  `is_primary` boolean NOT NULL DEFAULT FALSE COMMENT 'Is this the primary email address',
  `is_billing` boolean NOT NULL DEFAULT FALSE COMMENT 'Is this the billing?',
  `on_hold` int unsigned NOT NULL DEFAULT 0 COMMENT 'Implicit FK to civicrm_option_value where option_group = email_on_hold.',
  `is_bulkmail` boolean NOT NULL DEFAULT FALSE COMMENT 'Is this address for bulk mail ?',
  `hold_date` datetime NULL COMMENT 'When the address went on bounce hold',
  `reset_date` datetime NULL COMMENT 'When the address bounce status was last reset',
  `signature_text` text NULL DEFAULT NULL COMMENT 'Text formatted signature for the email.',
  `signature_html` text NULL DEFAULT NULL COMMENT 'HTML formatted signature for the email.',
  PRIMARY KEY (`id`),
  INDEX `index_location_type`(`location_type_id`),
  INDEX `UI_email`(`email`),
  INDEX `index_is_primary`(`is_primary`),
  INDEX `index_is_billing`(`is_billing`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_saved_search` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Saved Search ID',
  `name` varchar(255) NULL DEFAULT NULL COMMENT 'Unique name of saved search',
  `label` varchar(255) NULL DEFAULT NULL COMMENT 'Administrative label for search',
  `form_values` text NULL COMMENT 'Submitted form values for this search',
  `mapping_id` int unsigned NULL COMMENT 'Foreign key to civicrm_mapping used for saved search-builder searches.',
  `search_custom_id` int unsigned NULL COMMENT 'Foreign key to civicrm_option value table used for saved custom searches.',
  `api_entity` varchar(255) NULL COMMENT 'Entity name for API based search',
  `api_params` text NULL COMMENT 'Parameters for API based search',
  `created_id` int unsigned NULL COMMENT 'FK to contact table.',
  `modified_id` int unsigned NULL COMMENT 'FK to contact table.',
  `expires_date` timestamp NULL COMMENT 'Optional date after which the search is not needed',
  `created_date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP COMMENT 'When the search was created.',
  `modified_date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP COMMENT 'When the search was last modified.',
  `description` text NULL,
  `is_template` boolean NOT NULL DEFAULT FALSE COMMENT 'Search templates are used as a starting point for building new searches',
  PRIMARY KEY (`id`),
  UNIQUE INDEX `UI_name`(`name`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_group` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Group ID',
  `name` varchar(64) NOT NULL COMMENT 'Internal name of Group.',
  `title` varchar(255) NOT NULL COMMENT 'Name of Group.',
  `description` text NULL COMMENT 'Optional verbose description of the group.',
  `source` varchar(64) NULL COMMENT 'Module or process which created this group.',
  `saved_search_id` int unsigned NULL COMMENT 'FK to saved search table.',
  `is_active` boolean NOT NULL DEFAULT TRUE COMMENT 'Is this group active?',
  `visibility` varchar(24) NULL DEFAULT 'User and User Admin Only' COMMENT 'In what context(s) is this field visible.',
  `where_clause` text NULL COMMENT 'the sql where clause if a saved search acl',
  `select_tables` text NULL COMMENT 'the tables to be included in a select data',
  `where_tables` text NULL COMMENT 'the tables to be included in the count statement',
  `group_type` varchar(128) NULL COMMENT 'FK to group type',
  `cache_date` timestamp NULL COMMENT 'Date when we created the cache for a smart group',
  `cache_fill_took` double NULL COMMENT 'Seconds taken to fill smart group cache',
  `refresh_date` timestamp NULL COMMENT 'Unused deprecated column.',
  `parents` text NULL COMMENT 'List of parent groups',
  `children` text NULL COMMENT 'List of child groups (calculated)',
  `is_hidden` boolean NOT NULL DEFAULT FALSE COMMENT 'Is this group hidden?',
  `is_reserved` boolean NOT NULL DEFAULT FALSE,
  `created_id` int unsigned NULL COMMENT 'FK to contact table.',
  `modified_id` int unsigned NULL COMMENT 'FK to contact table.',
  `frontend_title` varchar(255) NOT NULL COMMENT 'Alternative public title for this Group.',
  `frontend_description` text NULL DEFAULT NULL COMMENT 'Alternative public description of the group.',
  PRIMARY KEY (`id`),
  INDEX `UI_cache_date`(`cache_date`),
  INDEX `index_group_type`(`group_type`),
  UNIQUE INDEX `UI_title`(`title`),
  UNIQUE INDEX `UI_name`(`name`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_group_contact` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'primary key',
  `group_id` int unsigned NOT NULL COMMENT 'FK to civicrm_group',
  `contact_id` int unsigned NOT NULL COMMENT 'FK to civicrm_contact',
  `status` varchar(8) NULL COMMENT 'status of contact relative to membership in group',
  `location_id` int unsigned NULL COMMENT 'Optional location to associate with this membership',
  `email_id` int unsigned NULL COMMENT 'Optional email to associate with this membership',
  PRIMARY KEY (`id`),
  UNIQUE INDEX `UI_contact_group`(`contact_id`, `group_id`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE `civicrm_subscription_history` (
  `id` int unsigned NOT NULL AUTO_INCREMENT COMMENT 'Internal ID',
  `contact_id` int unsigned NOT NULL COMMENT 'Contact ID',
  `group_id` int unsigned NULL COMMENT 'Group ID',
  `date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP COMMENT 'Date of the (un)subscription',
  `method` varchar(8) NULL COMMENT 'How the (un)subscription was triggered',
  `status` varchar(8) NULL COMMENT 'The state of the contact within the group',
  `tracking` varchar(255) NULL COMMENT 'IP address or other tracking info',
  PRIMARY KEY (`id`)
)
ENGINE=InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

-- Foreign keys (CiviCRM adds them after all tables exist).
ALTER TABLE `civicrm_contact`
  ADD CONSTRAINT `FK_civicrm_contact_primary_contact_id` FOREIGN KEY (`primary_contact_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL,
  ADD CONSTRAINT `FK_civicrm_contact_employer_id` FOREIGN KEY (`employer_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL;
ALTER TABLE `civicrm_email`
  ADD CONSTRAINT `FK_civicrm_email_contact_id` FOREIGN KEY (`contact_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE CASCADE;
ALTER TABLE `civicrm_saved_search`
  ADD CONSTRAINT `FK_civicrm_saved_search_mapping_id` FOREIGN KEY (`mapping_id`) REFERENCES `civicrm_mapping`(`id`) ON DELETE SET NULL,
  ADD CONSTRAINT `FK_civicrm_saved_search_created_id` FOREIGN KEY (`created_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL,
  ADD CONSTRAINT `FK_civicrm_saved_search_modified_id` FOREIGN KEY (`modified_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL;
ALTER TABLE `civicrm_group`
  ADD CONSTRAINT `FK_civicrm_group_saved_search_id` FOREIGN KEY (`saved_search_id`) REFERENCES `civicrm_saved_search`(`id`) ON DELETE CASCADE,
  ADD CONSTRAINT `FK_civicrm_group_created_id` FOREIGN KEY (`created_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL,
  ADD CONSTRAINT `FK_civicrm_group_modified_id` FOREIGN KEY (`modified_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE SET NULL;
ALTER TABLE `civicrm_group_contact`
  ADD CONSTRAINT `FK_civicrm_group_contact_group_id` FOREIGN KEY (`group_id`) REFERENCES `civicrm_group`(`id`) ON DELETE CASCADE,
  ADD CONSTRAINT `FK_civicrm_group_contact_contact_id` FOREIGN KEY (`contact_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE CASCADE,
  ADD CONSTRAINT `FK_civicrm_group_contact_location_id` FOREIGN KEY (`location_id`) REFERENCES `civicrm_loc_block`(`id`) ON DELETE SET NULL,
  ADD CONSTRAINT `FK_civicrm_group_contact_email_id` FOREIGN KEY (`email_id`) REFERENCES `civicrm_email`(`id`);
ALTER TABLE `civicrm_subscription_history`
  ADD CONSTRAINT `FK_civicrm_subscription_history_contact_id` FOREIGN KEY (`contact_id`) REFERENCES `civicrm_contact`(`id`) ON DELETE CASCADE,
  ADD CONSTRAINT `FK_civicrm_subscription_history_group_id` FOREIGN KEY (`group_id`) REFERENCES `civicrm_group`(`id`) ON DELETE CASCADE;
