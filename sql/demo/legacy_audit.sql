-- The legacy trigger auditing that activity-cdc replaces: 64 row-level audit triggers over the
-- 18 tables of platform.sql, writing full-row JSON images into public.audit_log.
--
-- Written the way such auditing usually is: AFTER ... FOR EACH ROW triggers that call plpgsql
-- functions inserting to_jsonb(OLD) / to_jsonb(NEW), TG_TABLE_NAME, TG_OP and txid_current().
--   * 54 = 18 tables x (insert, update, delete): audit_<table>_<event> -> audit_row_change()
--   *  7 status-change triggers on the money and compliance workflows:
--        audit_<table>_status -> audit_status_change()        (operation 'STATUS_CHANGE')
--   *  3 amount-change triggers on the figures that move money or tokens:
--        audit_<table>_<column> -> audit_amount_change(column) (operation 'AMOUNT_CHANGE')
-- Every trigger is named audit_* and calls a function named audit_*: a tool recognises them by
-- either. Count them with:
--   SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'audit_%';  -- 64
--
-- Load it after platform.sql; platform.sql never loads it (the demo runs with and without it).
-- Idempotent: CREATE OR REPLACE FUNCTION, DROP TRIGGER IF EXISTS before each CREATE TRIGGER.

CREATE TABLE IF NOT EXISTS public.audit_log (
    id          bigserial PRIMARY KEY,
    table_name  text,
    operation   text,          -- INSERT, UPDATE, DELETE, STATUS_CHANGE, AMOUNT_CHANGE
    txid        bigint DEFAULT txid_current(),
    old_data    jsonb,
    new_data    jsonb,
    changed_by  bigint,
    changed_at  timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS audit_log_table_name_changed_at_idx
    ON public.audit_log (table_name, changed_at);

-- The acting user: the application's session setting when it sets one, else the row's
-- updated_by / created_by column (absent columns read as NULL through to_jsonb).
CREATE OR REPLACE FUNCTION public.audit_row_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    actor bigint := NULLIF(current_setting('app.current_user_id', true), '')::bigint;
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW);
        INSERT INTO public.audit_log (table_name, operation, txid, new_data, changed_by)
        VALUES (TG_TABLE_NAME, TG_OP, txid_current(), new_row,
                COALESCE(actor, (new_row ->> 'created_by')::bigint));
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        old_row := to_jsonb(OLD);
        new_row := to_jsonb(NEW);
        INSERT INTO public.audit_log (table_name, operation, txid, old_data, new_data, changed_by)
        VALUES (TG_TABLE_NAME, TG_OP, txid_current(), old_row, new_row,
                COALESCE(actor, (new_row ->> 'updated_by')::bigint,
                         (new_row ->> 'created_by')::bigint));
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        old_row := to_jsonb(OLD);
        INSERT INTO public.audit_log (table_name, operation, txid, old_data, changed_by)
        VALUES (TG_TABLE_NAME, TG_OP, txid_current(), old_row,
                COALESCE(actor, (old_row ->> 'updated_by')::bigint,
                         (old_row ->> 'created_by')::bigint));
        RETURN OLD;
    END IF;
    RETURN NULL;
END;
$$;

-- A second record for workflow transitions, so that compliance can list them without diffing
-- full rows. Fired by AFTER UPDATE OF status ... WHEN (OLD.status IS DISTINCT FROM NEW.status).
CREATE OR REPLACE FUNCTION public.audit_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    actor bigint := NULLIF(current_setting('app.current_user_id', true), '')::bigint;
BEGIN
    INSERT INTO public.audit_log (table_name, operation, txid, old_data, new_data, changed_by)
    VALUES (TG_TABLE_NAME, 'STATUS_CHANGE', txid_current(),
            jsonb_build_object('id', to_jsonb(OLD) -> 'id', 'status', to_jsonb(OLD) -> 'status'),
            jsonb_build_object('id', to_jsonb(NEW) -> 'id', 'status', to_jsonb(NEW) -> 'status'),
            COALESCE(actor, (to_jsonb(NEW) ->> 'updated_by')::bigint));
    RETURN NEW;
END;
$$;

-- A second record when a money or token figure changes; TG_ARGV[0] names the column.
CREATE OR REPLACE FUNCTION public.audit_amount_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    actor bigint := NULLIF(current_setting('app.current_user_id', true), '')::bigint;
    col text := TG_ARGV[0];
BEGIN
    INSERT INTO public.audit_log (table_name, operation, txid, old_data, new_data, changed_by)
    VALUES (TG_TABLE_NAME, 'AMOUNT_CHANGE', txid_current(),
            jsonb_build_object('id', to_jsonb(OLD) -> 'id', col, to_jsonb(OLD) -> col),
            jsonb_build_object('id', to_jsonb(NEW) -> 'id', col, to_jsonb(NEW) -> col),
            COALESCE(actor, (to_jsonb(NEW) ->> 'updated_by')::bigint));
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- The 64 triggers, table by table (3, 4 or 5 per table; see docs/demo-platform.md).
-- ---------------------------------------------------------------------------------------------

-- users
DROP TRIGGER IF EXISTS audit_users_insert ON public.users;
CREATE TRIGGER audit_users_insert AFTER INSERT ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_users_update ON public.users;
CREATE TRIGGER audit_users_update AFTER UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_users_delete ON public.users;
CREATE TRIGGER audit_users_delete AFTER DELETE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- organizations
DROP TRIGGER IF EXISTS audit_organizations_insert ON public.organizations;
CREATE TRIGGER audit_organizations_insert AFTER INSERT ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_organizations_update ON public.organizations;
CREATE TRIGGER audit_organizations_update AFTER UPDATE ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_organizations_delete ON public.organizations;
CREATE TRIGGER audit_organizations_delete AFTER DELETE ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- user_roles
DROP TRIGGER IF EXISTS audit_user_roles_insert ON public.user_roles;
CREATE TRIGGER audit_user_roles_insert AFTER INSERT ON public.user_roles
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_user_roles_update ON public.user_roles;
CREATE TRIGGER audit_user_roles_update AFTER UPDATE ON public.user_roles
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_user_roles_delete ON public.user_roles;
CREATE TRIGGER audit_user_roles_delete AFTER DELETE ON public.user_roles
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- api_keys
DROP TRIGGER IF EXISTS audit_api_keys_insert ON public.api_keys;
CREATE TRIGGER audit_api_keys_insert AFTER INSERT ON public.api_keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_api_keys_update ON public.api_keys;
CREATE TRIGGER audit_api_keys_update AFTER UPDATE ON public.api_keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_api_keys_delete ON public.api_keys;
CREATE TRIGGER audit_api_keys_delete AFTER DELETE ON public.api_keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- investors
DROP TRIGGER IF EXISTS audit_investors_insert ON public.investors;
CREATE TRIGGER audit_investors_insert AFTER INSERT ON public.investors
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_investors_update ON public.investors;
CREATE TRIGGER audit_investors_update AFTER UPDATE ON public.investors
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_investors_delete ON public.investors;
CREATE TRIGGER audit_investors_delete AFTER DELETE ON public.investors
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- wallets
DROP TRIGGER IF EXISTS audit_wallets_insert ON public.wallets;
CREATE TRIGGER audit_wallets_insert AFTER INSERT ON public.wallets
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_wallets_update ON public.wallets;
CREATE TRIGGER audit_wallets_update AFTER UPDATE ON public.wallets
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_wallets_delete ON public.wallets;
CREATE TRIGGER audit_wallets_delete AFTER DELETE ON public.wallets
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- kyc_verifications
DROP TRIGGER IF EXISTS audit_kyc_verifications_insert ON public.kyc_verifications;
CREATE TRIGGER audit_kyc_verifications_insert AFTER INSERT ON public.kyc_verifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_kyc_verifications_update ON public.kyc_verifications;
CREATE TRIGGER audit_kyc_verifications_update AFTER UPDATE ON public.kyc_verifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_kyc_verifications_delete ON public.kyc_verifications;
CREATE TRIGGER audit_kyc_verifications_delete AFTER DELETE ON public.kyc_verifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_kyc_verifications_status ON public.kyc_verifications;
CREATE TRIGGER audit_kyc_verifications_status AFTER UPDATE OF status ON public.kyc_verifications
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- projects
DROP TRIGGER IF EXISTS audit_projects_insert ON public.projects;
CREATE TRIGGER audit_projects_insert AFTER INSERT ON public.projects
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_projects_update ON public.projects;
CREATE TRIGGER audit_projects_update AFTER UPDATE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_projects_delete ON public.projects;
CREATE TRIGGER audit_projects_delete AFTER DELETE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- tokens
DROP TRIGGER IF EXISTS audit_tokens_insert ON public.tokens;
CREATE TRIGGER audit_tokens_insert AFTER INSERT ON public.tokens
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_tokens_update ON public.tokens;
CREATE TRIGGER audit_tokens_update AFTER UPDATE ON public.tokens
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_tokens_delete ON public.tokens;
CREATE TRIGGER audit_tokens_delete AFTER DELETE ON public.tokens
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_tokens_total_supply ON public.tokens;
CREATE TRIGGER audit_tokens_total_supply AFTER UPDATE OF total_supply ON public.tokens
    FOR EACH ROW WHEN (OLD.total_supply IS DISTINCT FROM NEW.total_supply)
    EXECUTE FUNCTION public.audit_amount_change('total_supply');

-- documents
DROP TRIGGER IF EXISTS audit_documents_insert ON public.documents;
CREATE TRIGGER audit_documents_insert AFTER INSERT ON public.documents
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_documents_update ON public.documents;
CREATE TRIGGER audit_documents_update AFTER UPDATE ON public.documents
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_documents_delete ON public.documents;
CREATE TRIGGER audit_documents_delete AFTER DELETE ON public.documents
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();

-- subscriptions
DROP TRIGGER IF EXISTS audit_subscriptions_insert ON public.subscriptions;
CREATE TRIGGER audit_subscriptions_insert AFTER INSERT ON public.subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_subscriptions_update ON public.subscriptions;
CREATE TRIGGER audit_subscriptions_update AFTER UPDATE ON public.subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_subscriptions_delete ON public.subscriptions;
CREATE TRIGGER audit_subscriptions_delete AFTER DELETE ON public.subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_subscriptions_status ON public.subscriptions;
CREATE TRIGGER audit_subscriptions_status AFTER UPDATE OF status ON public.subscriptions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();
DROP TRIGGER IF EXISTS audit_subscriptions_amount ON public.subscriptions;
CREATE TRIGGER audit_subscriptions_amount AFTER UPDATE OF amount ON public.subscriptions
    FOR EACH ROW WHEN (OLD.amount IS DISTINCT FROM NEW.amount)
    EXECUTE FUNCTION public.audit_amount_change('amount');

-- approvals
DROP TRIGGER IF EXISTS audit_approvals_insert ON public.approvals;
CREATE TRIGGER audit_approvals_insert AFTER INSERT ON public.approvals
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_approvals_update ON public.approvals;
CREATE TRIGGER audit_approvals_update AFTER UPDATE ON public.approvals
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_approvals_delete ON public.approvals;
CREATE TRIGGER audit_approvals_delete AFTER DELETE ON public.approvals
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_approvals_status ON public.approvals;
CREATE TRIGGER audit_approvals_status AFTER UPDATE OF status ON public.approvals
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- token_allocations
DROP TRIGGER IF EXISTS audit_token_allocations_insert ON public.token_allocations;
CREATE TRIGGER audit_token_allocations_insert AFTER INSERT ON public.token_allocations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_allocations_update ON public.token_allocations;
CREATE TRIGGER audit_token_allocations_update AFTER UPDATE ON public.token_allocations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_allocations_delete ON public.token_allocations;
CREATE TRIGGER audit_token_allocations_delete AFTER DELETE ON public.token_allocations
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_allocations_amount ON public.token_allocations;
CREATE TRIGGER audit_token_allocations_amount AFTER UPDATE OF amount ON public.token_allocations
    FOR EACH ROW WHEN (OLD.amount IS DISTINCT FROM NEW.amount)
    EXECUTE FUNCTION public.audit_amount_change('amount');

-- token_transfers
DROP TRIGGER IF EXISTS audit_token_transfers_insert ON public.token_transfers;
CREATE TRIGGER audit_token_transfers_insert AFTER INSERT ON public.token_transfers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_transfers_update ON public.token_transfers;
CREATE TRIGGER audit_token_transfers_update AFTER UPDATE ON public.token_transfers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_transfers_delete ON public.token_transfers;
CREATE TRIGGER audit_token_transfers_delete AFTER DELETE ON public.token_transfers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_token_transfers_status ON public.token_transfers;
CREATE TRIGGER audit_token_transfers_status AFTER UPDATE OF status ON public.token_transfers
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- compliance_checks
DROP TRIGGER IF EXISTS audit_compliance_checks_insert ON public.compliance_checks;
CREATE TRIGGER audit_compliance_checks_insert AFTER INSERT ON public.compliance_checks
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_compliance_checks_update ON public.compliance_checks;
CREATE TRIGGER audit_compliance_checks_update AFTER UPDATE ON public.compliance_checks
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_compliance_checks_delete ON public.compliance_checks;
CREATE TRIGGER audit_compliance_checks_delete AFTER DELETE ON public.compliance_checks
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_compliance_checks_status ON public.compliance_checks;
CREATE TRIGGER audit_compliance_checks_status AFTER UPDATE OF status ON public.compliance_checks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- distributions
DROP TRIGGER IF EXISTS audit_distributions_insert ON public.distributions;
CREATE TRIGGER audit_distributions_insert AFTER INSERT ON public.distributions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_distributions_update ON public.distributions;
CREATE TRIGGER audit_distributions_update AFTER UPDATE ON public.distributions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_distributions_delete ON public.distributions;
CREATE TRIGGER audit_distributions_delete AFTER DELETE ON public.distributions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_distributions_status ON public.distributions;
CREATE TRIGGER audit_distributions_status AFTER UPDATE OF status ON public.distributions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- redemptions
DROP TRIGGER IF EXISTS audit_redemptions_insert ON public.redemptions;
CREATE TRIGGER audit_redemptions_insert AFTER INSERT ON public.redemptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_redemptions_update ON public.redemptions;
CREATE TRIGGER audit_redemptions_update AFTER UPDATE ON public.redemptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_redemptions_delete ON public.redemptions;
CREATE TRIGGER audit_redemptions_delete AFTER DELETE ON public.redemptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_redemptions_status ON public.redemptions;
CREATE TRIGGER audit_redemptions_status AFTER UPDATE OF status ON public.redemptions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();

-- notifications
DROP TRIGGER IF EXISTS audit_notifications_insert ON public.notifications;
CREATE TRIGGER audit_notifications_insert AFTER INSERT ON public.notifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_notifications_update ON public.notifications;
CREATE TRIGGER audit_notifications_update AFTER UPDATE ON public.notifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
DROP TRIGGER IF EXISTS audit_notifications_delete ON public.notifications;
CREATE TRIGGER audit_notifications_delete AFTER DELETE ON public.notifications
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
