-- An officer decides a subscription and its approval, and the investor is told (2 updates, 1 insert).
\set sid random(1, :subscriptions)
\set officer random(2, 5)
\set uid random(11, :users)
BEGIN;
UPDATE public.subscriptions
   SET status = CASE status WHEN 'pending' THEN 'approved' WHEN 'approved' THEN 'pending' ELSE status END,
       approved_at = now(), updated_by = :officer
 WHERE id = :sid;
UPDATE public.approvals SET status = 'approved', decided_by = :officer, decided_at = now(), updated_by = :officer WHERE id = :sid;
INSERT INTO public.notifications (user_id, kind, title) VALUES (:uid, 'subscription', 'Your subscription was reviewed');
COMMIT;
