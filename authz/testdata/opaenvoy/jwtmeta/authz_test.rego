package envoy.authz_test

import data.envoy.authz

test_example_com if {
	authz.allow with input as {"attributes": {"metadataContext": {"filterMetadata": {"envoy.filters.http.jwt_authn": {"verified_jwt": {"email": "alice@example.com"}}}}}}
}
