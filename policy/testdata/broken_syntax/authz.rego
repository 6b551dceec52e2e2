package gdprgate.authz

decision := {"allow": true if {
