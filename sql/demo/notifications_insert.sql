INSERT INTO public.notifications (user_id, kind, title, body, status, read_at)
VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)
