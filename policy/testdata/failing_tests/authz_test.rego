package gdprgate.authz_test

import data.gdprgate.authz

test_unauthenticated_denied if {
	not authz.decision.allow with input.caller.authenticated as false
}
