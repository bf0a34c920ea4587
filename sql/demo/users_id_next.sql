SELECT nextval(pg_get_serial_sequence('public.users', 'id'))
