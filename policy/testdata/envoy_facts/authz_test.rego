package envoy.authz_test

import data.envoy.authz

test_agent if authz.allow with input as {"gdpr": {"caller": {"roles": ["agent"]}}}
