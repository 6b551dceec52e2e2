package crm

import _ "embed"

// GatewayConfigYAML is gdprgate.yaml: the route map, identity and wipe steps
// that protect this CRM. The demo and the end-to-end tests load it.
//
//go:embed gdprgate.yaml
var GatewayConfigYAML []byte
