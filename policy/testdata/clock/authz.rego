# Reads the clock: decisions can change between requests with equal facts.
package gdprgate.authz

decision := {"allow": true, "status": 200, "reason": "allowed", "message": "", "headers": {}, "visible_mask": 0} if {
	time.now_ns() > 0
}
