package envoy.authz_test

import data.envoy.authz

test_no_token_is_denied if {
	not authz.allow with input as {"attributes": {"request": {"http": {"method": "GET", "path": "/people/", "headers": {}}}}}
}
