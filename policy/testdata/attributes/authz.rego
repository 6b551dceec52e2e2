# A policy that also reads the request: denies DELETE whatever the facts.
package gdprgate.authz

decision := {"allow": false, "status": 405, "reason": "method_not_allowed", "message": "DELETE is not allowed.", "headers": {}, "visible_mask": 0} if {
	input.attributes.request.http.method == "DELETE"
} else := {"allow": true, "status": 200, "reason": "allowed", "message": "", "headers": {"x-first-segment": input.parsed_path[0]}, "visible_mask": input.caller.sensitivity_mask}
