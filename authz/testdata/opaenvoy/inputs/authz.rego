# The primer's input examples, rewritten: parsed_path, parsed_query,
# parsed_body, the peer address and input.version as opa-envoy-plugin
# fills them.
package envoy.authz

default allow := false

allow if input.parsed_path == ["people"]

allow if {
	input.parsed_path == ["search"]
	input.parsed_query.lang == ["en"]
	input.parsed_query.id == ["1", "2"]
}

allow if {
	input.parsed_path == ["signup"]
	input.parsed_body.firstname == "Charlie"
	input.parsed_body.lastname == "Opa"
	input.truncated_body == false
}

allow if {
	input.parsed_path == ["local"]
	input.attributes.source.address.socketAddress.address == "127.0.0.1"
	input.attributes.destination.address.socketAddress.portValue == 10000
	input.version == {"ext_authz": "v3", "encoding": "protojson"}
	input.attributes.request.http.protocol == "HTTP/1.1"
	input.attributes.contextExtensions.team == "people"
}
