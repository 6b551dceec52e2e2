# The boolean policy of opa-envoy-plugin's "Policy Primer via Examples",
# rewritten: a HS256 bearer token (secret "secret") carries a role; guests
# and admins may read /people/..., only an admin may create a person, and
# not under their own name (the token's sub is the base64url of the name).
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

action_permitted if {
	http.method == "POST"
	jwt.payload.role == "admin"
	glob.match("/people", ["/"], http.path)
	lower(input.parsed_body.firstname) != base64url.decode(jwt.payload.sub)
}

jwt := {"valid": valid, "payload": payload} if {
	[_, encoded] := split(http.headers.authorization, " ")
	[valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}
