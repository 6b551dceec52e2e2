package envoy.authz_test

import data.envoy.authz

test_no_token_is_401 if {
	r := authz.result with input as {"attributes": {"request": {"http": {"method": "GET", "path": "/people/", "headers": {}}}}}
	r.allowed == false
	r.http_status == 401
}
