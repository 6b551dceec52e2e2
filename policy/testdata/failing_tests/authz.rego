package gdprgate.authz

decision := {"allow": true, "status": 200, "reason": "allowed", "message": "", "headers": {}, "visible_mask": 4294967295}
