package envoy.authz_test

import data.envoy.authz

jwt(roles) := {"filterMetadata": {"envoy.filters.http.jwt_authn": {"verified_jwt": {"sub": "u-1", "roles": roles}}}}

test_agent_reads if {
	authz.result.allowed with input as {"attributes": {"metadataContext": jwt(["agent"]), "request": {"http": {"method": "GET", "path": "/api/contacts/c-1"}}}}
}

test_agent_may_not_call if {
	r := authz.result with input as {"parsed_path": ["api", "outbound", "calls"], "attributes": {"metadataContext": jwt(["agent"]), "request": {"http": {"method": "POST", "path": "/api/outbound/calls"}}}}
	r.allowed == false
	r.http_status == 403
}

test_no_token_is_401 if {
	r := authz.result with input as {"attributes": {"request": {"http": {"method": "GET", "path": "/api/contacts/c-1"}}}}
	r.http_status == 401
}
