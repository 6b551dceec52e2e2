# The object-result policy of opa-envoy-plugin's primer, rewritten: the
# same token rules, answered as opa-envoy-plugin's output document (entry
# point envoy/authz/result).
package envoy.authz

import input.attributes.request.http

default allow := false

allow if {
	token_current
	action_permitted
}

token_current if {
	jwt.valid
	now_s := time.now_ns() / 1000000000
	jwt.payload.nbf <= now_s
	now_s < jwt.payload.exp
}

action_permitted if {
	http.method == "GET"
	jwt.payload.role in {"guest", "admin"}
	glob.match("/people/*", ["/"], http.path)
}

jwt := {"valid": valid, "payload": payload} if {
	[_, encoded] := split(http.headers.authorization, " ")
	[valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}

upstream_headers["x-authz-checked"] := "yes"

upstream_headers["x-authz-by"] := "people-policy"

strip_headers := ["x-internal-token", "x-debug"]

client_headers["x-policy"] := "people"

status := 200 if {
	allow
} else := 401 if {
	not token_current
} else := 403

message := "token missing or expired" if status == 401

message := "not permitted" if status == 403

metadata := {"checked_role": jwt.payload.role} if jwt.valid

else := {"checked_role": "none"}

result["allowed"] := allow

result["headers"] := upstream_headers

result["request_headers_to_remove"] := strip_headers

result["response_headers_to_add"] := client_headers

result["http_status"] := status

result["body"] := message

result["dynamic_metadata"] := metadata
