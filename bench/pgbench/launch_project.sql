-- An issuer drafts a project with its token and asks for approval (3 inserts, 1 update).
\set org random(1, :orgs)
BEGIN;
INSERT INTO public.projects (organization_id, name, slug, project_type, status, target_raise, min_investment, currency, created_by, updated_by)
    VALUES (:org, 'Harbour Fund', 'p-' || md5(random()::text), 'fund', 'review', 5000000, 1000, 'USD', 1, 1)
    RETURNING id AS pid \gset
INSERT INTO public.tokens (project_id, symbol, name, status, created_by, updated_by)
    VALUES (:pid, 'T' || upper(substr(md5(random()::text), 1, 12)), 'Harbour Fund Token', 'draft', 1, 1);
INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by, created_by, updated_by)
    VALUES ('project', :pid, 'project.publish', 'pending', 1, 1, 1);
UPDATE public.organizations SET metadata = metadata || jsonb_build_object('last_launch', now()), updated_by = 1 WHERE id = :org;
COMMIT;
