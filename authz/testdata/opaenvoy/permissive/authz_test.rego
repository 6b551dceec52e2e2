package envoy.authz_test

import data.envoy.authz

test_roles_allow if authz.allow with input as {"attributes": {"request": {"http": {"headers": {"x-gdpr-roles": "agent"}}}}}
