// Package bootstrapcheck checks an Envoy v3 bootstrap written in YAML the
// way Envoy would refuse it: strict protojson (unknown fields and
// unresolvable Any types are errors), the generated validation rules on
// every message including those inside typed_config, and every cluster
// referenced defined. The example bootstraps and the Helm chart's are
// checked with it; no Envoy binary is needed.
package bootstrapcheck

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gdprgate/gdprgate/internal/yamlfile"

	// Every extension the bootstraps name in a typed_config: registering
	// their types lets protojson and anypb resolve the Any payloads.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// allValidator is what protoc-gen-validate generates on Envoy messages.
type allValidator interface{ ValidateAll() error }

// Check parses an Envoy bootstrap written in YAML strictly (unknown
// fields and unresolvable Any types are errors), validates it and, since the
// generated validators stop at google.protobuf.Any, every typed config inside
// it, and checks that each cluster referenced exists.
func Check(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yamlfile.ToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var bs bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &bs); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := bs.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	refs := map[string][]string{} // cluster name -> where it is referenced
	if err := walk(bs.ProtoReflect(), "bootstrap", refs); err != nil {
		return nil, err
	}
	defined := map[string]bool{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		defined[c.GetName()] = true
	}
	var missing []string
	for name, where := range refs {
		if !defined[name] {
			missing = append(missing, fmt.Sprintf("cluster %q (referenced at %s) is not defined in static_resources.clusters", name, strings.Join(where, ", ")))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return nil, errors.New(strings.Join(missing, "; "))
	}
	return &bs, nil
}

// clusterRefFields are the string fields that name a cluster: a route's
// cluster, an Envoy gRPC service's cluster_name, an HttpUri's cluster (remote
// JWKS, …), and a load assignment's cluster_name.
var clusterRefFields = map[protoreflect.Name]bool{"cluster": true, "cluster_name": true}

// walk visits every populated field of m, recording cluster references and
// unpacking and validating every Any, recursively.
func walk(m protoreflect.Message, path string, refs map[string][]string) error {
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if v, ok := inner.(allValidator); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s (%s): %w", path, a.GetTypeUrl(), err)
			}
		}
		return walk(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", refs)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), refs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walk(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()), refs)
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = walk(v.Message(), p, refs)
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() && clusterRefFields[fd.Name()]:
			refs[v.String()] = append(refs[v.String()], p)
		}
		return err == nil
	})
	return err
}
