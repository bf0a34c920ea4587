-- An investor submits identity documents (1 insert, 1 update).
\set inv random(1, :investors)
\set uid 10 + :inv
BEGIN;
SELECT id, kyc_status FROM public.investors WHERE id = :inv;
INSERT INTO public.kyc_verifications (investor_id, provider, provider_reference, level, document_type, document_number, status, created_by, updated_by)
    VALUES (:inv, 'onfido', md5(random()::text), 'basic', 'passport', 'P' || (random() * 1e8)::int, 'pending', :uid, :uid);
UPDATE public.investors SET kyc_status = 'pending', updated_by = :uid WHERE id = :inv;
COMMIT;
