# Compiles, but the decision is not the documented object.
package gdprgate.authz

decision := {"allow": "yes", "status": 200, "reason": "allowed", "visible_mask": 1} if {
	input.route.kind == "read"
} else := {"allow": true, "status": 200, "reason": "allowed", "visible_mask": "all"} if {
	input.route.kind == "list"
} else := {"allow": false, "status": 200, "reason": "contradiction", "visible_mask": 0} if {
	input.route.kind == "export"
} else := "allow" if {
	input.route.kind == "write"
} else := {"allow": true, "status": 200, "reason": "allowed", "visible_mask": 1} if {
	input.route.kind == "outbound"
}
