package gdprgate.authz_test

import data.gdprgate.authz

test_delete_denied if {
	authz.decision.status == 405 with input.attributes.request.http.method as "DELETE"
}
