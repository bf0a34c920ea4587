-- An issuer uploads a report of 2 to 20 KB of extracted text (TOASTed), investors are told (2 inserts).
\set prj random(1, :projects)
\set words random(60, 600)
\set uid random(11, :users)
BEGIN;
INSERT INTO public.documents (organization_id, project_id, doc_type, title, file_name, mime_type, size_bytes, sha256, content, status, created_by, updated_by)
SELECT p.organization_id, p.id, 'investor_report', 'Quarterly report ' || p.id, 'report-' || p.id || '.txt', 'text/plain',
       length(t.content), encode(sha256(convert_to(t.content, 'UTF8')), 'hex'), t.content, 'draft', 1, 1
  FROM public.projects AS p,
       (SELECT string_agg(md5(g::text || random()::text), ' ') AS content FROM generate_series(1, :words) AS g) AS t
 WHERE p.id = :prj;
INSERT INTO public.notifications (user_id, kind, title) VALUES (:uid, 'document', 'A new investor report is available');
COMMIT;
