package gdprgate.authz

allow := true
