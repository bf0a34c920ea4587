-- An investor subscribes to a project: subscription, its approval request, an AML check (3 inserts).
\set inv random(1, :investors)
\set uid 10 + :inv
\set prj random(1, :projects)
BEGIN;
SELECT status, min_investment FROM public.projects WHERE id = :prj;
INSERT INTO public.subscriptions (investor_id, project_id, token_id, amount, currency, status, payment_reference, created_by, updated_by)
    VALUES (:inv, :prj, :prj, round((1000 + random() * 50000)::numeric, 2), 'USD', 'pending', 'PAY-' || md5(random()::text), :uid, :uid)
    RETURNING id AS sid \gset
INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by, created_by, updated_by)
    VALUES ('subscription', :sid, 'subscription.approve', 'pending', :uid, :uid, :uid);
INSERT INTO public.compliance_checks (investor_id, subscription_id, check_type, provider, status, details, created_by, updated_by)
    VALUES (:inv, :sid, 'aml', 'internal', 'pending', '{}', :uid, :uid);
COMMIT;
