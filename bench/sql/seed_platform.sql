-- The base rows every benchmark database starts from: the demo platform (sql/demo/platform.sql)
-- with a few tens of thousands of users, investors, subscriptions and holdings, written with
-- INSERT ... SELECT generate_series so that seeding takes seconds, not minutes.
--
-- Ids are predictable on purpose: the tables are empty and their identity columns start at 1,
-- so the pgbench scripts (bench/pgbench/*.sql) can pick existing rows with random(1, :n).
-- Row i of each table relates to row i of the others: investor i is user 10 + i and owns
-- wallet i and KYC verification i; subscription i is investor 1 + i % investors in project
-- (and token) 1 + i % projects; allocation i comes from subscription i; distribution and
-- redemption i pay out allocation i. Users 1..10 are staff: 1 admin, 2..5 compliance officers,
-- 6..10 operators.
--
-- Parameters (psycopg named placeholders): users, orgs, investors, projects, subscriptions,
-- allocations, transfers, distributions, redemptions, api_keys, notifications, documents.
-- One statement per paragraph; each ends with a semicolon at the end of a line.

INSERT INTO public.users (email, full_name, password_hash, status, mfa_enabled, locale,
                          last_seen_at, metadata, created_by, updated_by)
SELECT 'user' || i || '@example.com',
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Linus', 'Radia', 'Ken'])[1 + i %% 8]
           || ' ' || (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth',
                            'Perlman', 'Thompson', 'Wirth'])[1 + i %% 9],
       '$argon2id$v=19$m=65536,t=3,p=4$' || md5(i::text) || md5((i * 7)::text),
       'active', i %% 3 = 0, (ARRAY['en', 'en', 'de', 'fr', 'ja'])[1 + i %% 5],
       now() - (i %% 1000) * interval '1 hour',
       jsonb_build_object('signup_source', (ARRAY['web', 'ios', 'android'])[1 + i %% 3]),
       CASE WHEN i > 1 THEN 1 END, CASE WHEN i > 1 THEN 1 END
  FROM generate_series(1, %(users)s) AS i;

INSERT INTO public.organizations (name, legal_name, org_type, country, registration_number,
                                  status, metadata, created_by, updated_by)
SELECT 'Issuer ' || i, 'Issuer ' || i || ' Holdings Ltd', 'issuer',
       (ARRAY['US', 'GB', 'DE', 'CH', 'SG', 'LU'])[1 + i %% 6], 'REG-' || (100000 + i),
       'active', '{"tier": "standard"}', 1, 1
  FROM generate_series(1, %(orgs)s) AS i;

INSERT INTO public.user_roles (user_id, role, organization_id, created_by)
SELECT i, CASE WHEN i = 1 THEN 'admin' WHEN i <= 5 THEN 'compliance_officer'
               WHEN i <= 10 THEN 'operator' ELSE 'investor' END, NULL, 1
  FROM generate_series(1, %(users)s) AS i;

INSERT INTO public.api_keys (user_id, name, key_prefix, key_hash, scopes, status, last_used_at,
                             expires_at, created_by, updated_by)
SELECT 1 + i %% %(users)s, (ARRAY['ci', 'backoffice', 'reporting', 'integration'])[1 + i %% 4],
       'ak_seed_' || i, md5('key' || i) || md5('hash' || i), '{read,write}', 'active', now(),
       now() + interval '1 year', 1, 1
  FROM generate_series(1, %(api_keys)s) AS i;

INSERT INTO public.investors (user_id, investor_type, legal_name, country, tax_id, date_of_birth,
                              accreditation_status, kyc_status, risk_rating, metadata,
                              created_by, updated_by)
SELECT 10 + i, CASE WHEN i %% 7 = 0 THEN 'institution' ELSE 'individual' END,
       'Investor ' || i, (ARRAY['US', 'GB', 'DE', 'FR', 'CH', 'SG', 'JP'])[1 + i %% 7],
       'TAX' || (100000000 + i), date '1950-01-01' + (i %% 18000),
       'accredited', 'approved', 'low', '{"source_of_funds": "salary"}', 10 + i, 10 + i
  FROM generate_series(1, %(investors)s) AS i;

INSERT INTO public.wallets (investor_id, chain, address, wallet_type, private_key_ref, status,
                            whitelisted_at, metadata, created_by, updated_by)
SELECT i, 'ethereum', '0x' || md5('wallet' || i) || substr(md5(i::text), 1, 8), 'custodial',
       'vault://custody/' || md5('pk' || i), 'whitelisted', now(), '{}', 10 + i, 10 + i
  FROM generate_series(1, %(investors)s) AS i;

INSERT INTO public.kyc_verifications (investor_id, provider, provider_reference, level,
                                      document_type, document_number, status, result,
                                      reviewed_by, reviewed_at, expires_at, created_by, updated_by)
SELECT i, (ARRAY['onfido', 'sumsub', 'jumio', 'persona'])[1 + i %% 4], 'ref-' || md5('kyc' || i),
       'basic', 'passport', 'P' || (10000000 + i), 'approved',
       jsonb_build_object('score', i %% 100, 'document_match', true), 2 + i %% 4, now(),
       now() + interval '2 years', 10 + i, 2 + i %% 4
  FROM generate_series(1, %(investors)s) AS i;

INSERT INTO public.projects (organization_id, name, slug, project_type, status, target_raise,
                             min_investment, currency, opens_at, closes_at, metadata,
                             created_by, updated_by)
SELECT 1 + i %% %(orgs)s, 'Project ' || i, 'seed-project-' || i,
       (ARRAY['equity', 'debt', 'real_estate', 'fund', 'receivables'])[1 + i %% 5], 'fundraising',
       1000000 + i * 1000, 1000, 'USD', now() - interval '30 days', now() + interval '60 days',
       '{"jurisdiction": "LU"}', 1, 1
  FROM generate_series(1, %(projects)s) AS i;

INSERT INTO public.tokens (project_id, symbol, name, standard, chain, contract_address, decimals,
                           total_supply, status, metadata, created_by, updated_by)
SELECT i, 'SEED' || i, 'Project ' || i || ' Token', 'ERC-3643', 'ethereum',
       '0x' || md5('token' || i) || substr(md5(i::text), 1, 8), 18, 1000000, 'deployed', '{}', 1, 1
  FROM generate_series(1, %(projects)s) AS i;

INSERT INTO public.documents (organization_id, project_id, doc_type, title, file_name, mime_type,
                              size_bytes, sha256, content, status, metadata, created_by,
                              updated_by)
SELECT 1 + i %% %(orgs)s, 1 + i %% %(projects)s, 'prospectus', 'Prospectus ' || i,
       'prospectus-' || i || '.txt', 'text/plain', 3300, md5('doc' || i) || md5(i::text),
       repeat(md5('document' || i) || ' ', 100), 'published', '{}', 1, 1
  FROM generate_series(1, %(documents)s) AS i;

INSERT INTO public.subscriptions (investor_id, project_id, token_id, amount, currency,
                                  token_amount, status, payment_reference, approved_at, metadata,
                                  created_by, updated_by)
SELECT 1 + i %% %(investors)s, 1 + i %% %(projects)s, 1 + i %% %(projects)s,
       1000 + (i %% 500) * 100, 'USD', 1000 + (i %% 500) * 100,
       CASE WHEN i <= %(allocations)s THEN 'allocated' WHEN i %% 2 = 0 THEN 'approved'
            ELSE 'pending' END,
       'PAY-' || md5('sub' || i), now(), '{}', 11 + i %% %(investors)s, 11 + i %% %(investors)s
  FROM generate_series(1, %(subscriptions)s) AS i;

INSERT INTO public.approvals (entity_type, entity_id, action, status, requested_by, decided_by,
                              decided_at, metadata, created_by, updated_by)
SELECT 'subscription', i, 'subscription.approve', 'approved', 11 + i %% %(investors)s,
       2 + i %% 4, now(), '{}', 11 + i %% %(investors)s, 2 + i %% 4
  FROM generate_series(1, %(subscriptions)s) AS i;

INSERT INTO public.token_allocations (token_id, investor_id, wallet_id, subscription_id, amount,
                                      status, lockup_until, metadata, created_by, updated_by)
SELECT 1 + i %% %(projects)s, 1 + i %% %(investors)s, 1 + i %% %(investors)s, i,
       1000000 + (i %% 500) * 100, 'minted', now() + interval '180 days', '{}', 1, 1
  FROM generate_series(1, %(allocations)s) AS i;

INSERT INTO public.token_transfers (token_id, from_wallet_id, to_wallet_id, from_allocation_id,
                                    amount, status, tx_hash, block_number, metadata, created_by,
                                    updated_by)
SELECT 1 + i %% %(projects)s, 1 + i %% %(investors)s, 1 + (i * 7) %% %(investors)s, i, 10,
       'confirmed', '0x' || md5('tx' || i) || md5(i::text), 18000000 + i, '{}', 1, 1
  FROM generate_series(1, %(transfers)s) AS i;

INSERT INTO public.compliance_checks (investor_id, check_type, provider, status, score, details,
                                      checked_at, created_by, updated_by)
SELECT i, 'sanctions', 'worldcheck', 'passed', (i %% 100) / 10.0, '{"hits": 0}', now(), 2, 2
  FROM generate_series(1, %(investors)s) AS i;

INSERT INTO public.distributions (token_id, investor_id, wallet_id, allocation_id,
                                  distribution_type, amount, currency, record_date, scheduled_for,
                                  status, metadata, created_by, updated_by)
SELECT 1 + i %% %(projects)s, 1 + i %% %(investors)s, 1 + i %% %(investors)s, i, 'dividend',
       10 + i %% 90, 'USD', current_date, now() + interval '7 days', 'scheduled', '{}', 1, 1
  FROM generate_series(1, %(distributions)s) AS i;

INSERT INTO public.redemptions (token_id, investor_id, allocation_id, wallet_id, token_amount,
                                currency, status, reason, metadata, created_by, updated_by)
SELECT 1 + i %% %(projects)s, 1 + i %% %(investors)s, i, 1 + i %% %(investors)s, 100, 'USD',
       'requested', 'liquidity', '{}', 11 + i %% %(investors)s, 11 + i %% %(investors)s
  FROM generate_series(1, %(redemptions)s) AS i;

INSERT INTO public.notifications (user_id, kind, title, body, status, metadata)
SELECT 1 + i %% %(users)s, 'system', 'Welcome to the platform',
       'Complete your profile to start investing.', 'unread', '{}'
  FROM generate_series(1, %(notifications)s) AS i;
