-- The latency probe's transaction: always exactly 4 row changes, each one an activity record
-- (a subscription, its approval request, the investor's profile, a notification), so that an
-- offered load in changes per second is a pgbench rate of a quarter as many transactions.
\set inv random(1, :investors)
\set uid 10 + :inv
\set prj random(1, :projects)
BEGIN;
INSERT INTO public.subscriptions (investor_id, project_id, token_id, amount, currency, status, payment_reference, created_by, updated_by)
    VALUES (:inv, :prj, :prj, round((1000 + random() * 50000)::numeric, 2), 'USD', 'pending', 'PAY-' || md5(random()::text), :uid, :uid)
    RETURNING id AS sid \gset
INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by, created_by, updated_by)
    VALUES ('subscription', :sid, 'subscription.approve', 'pending', :uid, :uid, :uid);
UPDATE public.investors SET metadata = metadata || jsonb_build_object('last_subscription', :sid::bigint), updated_by = :uid WHERE id = :inv;
INSERT INTO public.notifications (user_id, kind, title) VALUES (:uid, 'subscription', 'We received your subscription');
COMMIT;
