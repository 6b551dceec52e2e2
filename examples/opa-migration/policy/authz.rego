# A security team's opa-envoy-plugin policy, unchanged: who may call the
# CRM at all. It reads the token Envoy's jwt_authn verified (passed in
# metadata_context, payload_in_metadata: verified_jwt) and answers with
# opa-envoy-plugin's output document (entry point envoy/authz/result).
#
# gdprgate's GDPR decision applies on top of it: the registers decide which
# fields each role sees, wiped and obliviated subjects answer 404, outbound
# calls need a legal ground. This policy never has to know.
package envoy.authz

import input.attributes.request.http

token := input.attributes.metadataContext.filterMetadata["envoy.filters.http.jwt_authn"].verified_jwt

staff_roles := {"agent", "supervisor", "auditor", "marketer"}

default allow := false

# Staff read the CRM.
allow if {
	http.method in {"GET", "HEAD"}
	startswith(http.path, "/api/")
	some role in token.roles
	role in staff_roles
}

# Only marketers and supervisors place outbound calls.
allow if {
	http.method == "POST"
	input.parsed_path == ["api", "outbound", "calls"]
	some role in token.roles
	role in {"marketer", "supervisor"}
}

status := 401 if not token

else := 403

message := "a verified token is required" if status == 401

else := "your role may not do this"

result := {"allowed": true, "headers": {"x-authz-policy": "crm-access"}} if allow

else := {"allowed": false, "http_status": status, "body": message}
