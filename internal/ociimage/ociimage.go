// Package ociimage builds gdprgate's container images without a Docker
// daemon, with github.com/google/go-containerregistry: from scratch, a
// static Go binary, a non-root user (passwd and group entries), the CA
// certificates of the machine that builds it, and OCI labels with the
// version. The result is reproducible: the same binaries, bundle and
// creation time give the same digests.
//
// cmd/gdprgate-image drives it (`make image`); the Dockerfile at the
// repository's root declares the same image for users who build with
// Docker, and a test compares the two.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The non-root user every image runs as (distroless's "nonroot").
const (
	UID      = 65532
	UserName = "nonroot"
	User     = "65532:65532"
	Home     = "/home/nonroot"
)

// CABundlePath is where the certificates go (and where Go looks first).
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// Source is the repository the images are built from (a label).
const Source = "https://github.com/gdprgate/gdprgate"

// Spec describes one image. Gdprgate and ExampleCRM are the two the
// project builds.
type Spec struct {
	// Repository is the image's name without a tag.
	Repository  string
	Title       string
	Description string
	// Binary is the path of the program in the image; Package the Go
	// package it is built from.
	Binary  string
	Package string
	// Entrypoint and Cmd as in the image config.
	Entrypoint []string
	Cmd        []string
	// Env holds variables set in the image (NAME=value).
	Env []string
	// Ports are exposed ports ("9191/tcp").
	Ports []string
}

// Gdprgate is gdprgate's image. Inside a container, listening on loopback
// would make the servers unreachable (kubelet probes, Envoy in another
// pod), so the listen addresses default to all interfaces; a flag or the
// variable overrides them.
var Gdprgate = Spec{
	Repository:  "ghcr.io/gdprgate/gdprgate",
	Title:       "gdprgate",
	Description: "Makes an HTTP/JSON API obey GDPR visibility rules: Envoy ext_authz and ext_proc, a reverse proxy, an admin API",
	Binary:      "/gdprgate",
	Package:     "github.com/gdprgate/gdprgate/cmd/gdprgate",
	Entrypoint:  []string{"/gdprgate"},
	Cmd:         []string{"serve"},
	Env: []string{
		"GDPRGATE_GRPC_ADDR=0.0.0.0:9191",
		"GDPRGATE_ADMIN_ADDR=0.0.0.0:9192",
		"GDPRGATE_LISTEN=0.0.0.0:8080",
	},
	Ports: []string{"8080/tcp", "9191/tcp", "9192/tcp"},
}

// ExampleCRM is the reference scenario's legacy CRM (examples/crm).
var ExampleCRM = Spec{
	Repository:  "ghcr.io/gdprgate/example-crm",
	Title:       "gdprgate example CRM",
	Description: "The legacy CRM of gdprgate's reference scenario, with no GDPR logic at all",
	Binary:      "/crm",
	Package:     "github.com/gdprgate/gdprgate/examples/crm/cmd/crm",
	Entrypoint:  []string{"/crm"},
	Cmd:         []string{"--listen", "0.0.0.0:8081"},
	Ports:       []string{"8081/tcp"},
}

// DefaultTag is the tag the examples and the Helm chart use; `make image`
// gives each image this tag and the version's.
const DefaultTag = "latest"

// Options are the inputs of one build.
type Options struct {
	// Binaries maps a platform ("linux/amd64") to the path of a static
	// binary built for it.
	Binaries map[string]string
	Version  string
	Revision string
	// Created stamps the config and every file (reproducible builds: the
	// commit's time, or SOURCE_DATE_EPOCH).
	Created time.Time
	// CABundle is the PEM file of CA certificates copied into the image.
	CABundle string
}

// Labels are the OCI labels of an image built with o.
func (s Spec) Labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       s.Title,
		"org.opencontainers.image.description": s.Description,
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// Build makes one image per platform and the index over them.
func (s Spec) Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, errors.New("ociimage: no binary to put in the image")
	}
	base, err := baseLayer(o)
	if err != nil {
		return nil, err
	}
	platforms := make([]string, 0, len(o.Binaries))
	for p := range o.Binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img, err := s.image(o, base, p, o.Binaries[p])
		if err != nil {
			return nil, err
		}
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("ociimage: platform %q: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return idx, nil
}

func (s Spec) image(o Options, base v1.Layer, platform, binary string) (v1.Image, error) {
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("ociimage: platform %q: %w", platform, err)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	app, err := layer(o.Created, []file{{name: strings.TrimPrefix(s.Binary, "/"), mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "ociimage: passwd, group, CA certificates, " + Home, Comment: "base"}, MediaType: types.OCILayer},
		mutate.Addendum{Layer: app, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "ociimage: COPY " + s.Package + " " + s.Binary}, MediaType: types.OCILayer},
	)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Variant = plat.Architecture, plat.OS, plat.Variant
	cf.Created = v1.Time{Time: o.Created}
	ports := map[string]struct{}{}
	for _, p := range s.Ports {
		ports[p] = struct{}{}
	}
	cf.Config = v1.Config{
		Entrypoint:   s.Entrypoint,
		Cmd:          s.Cmd,
		User:         User,
		WorkingDir:   Home,
		Env:          append([]string{"PATH=/", "SSL_CERT_FILE=" + CABundlePath, "HOME=" + Home}, s.Env...),
		ExposedPorts: ports,
		Labels:       s.Labels(o),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	return img, nil
}

// baseLayer holds what scratch lacks for a Go server: the user, the CA
// certificates, a home and /tmp.
func baseLayer(o Options) (v1.Layer, error) {
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("ociimage: CA bundle: %w", err)
	}
	if n := countCerts(ca); n == 0 {
		return nil, fmt.Errorf("ociimage: CA bundle %s holds no certificate", o.CABundle)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", UserName, UID, UID, UserName, Home)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, UID)
	return layer(o.Created, []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: strings.TrimPrefix(CABundlePath, "/"), mode: 0o644, data: ca},
		{name: "home/", dir: true, mode: 0o755},
		{name: strings.TrimPrefix(Home, "/") + "/", dir: true, mode: 0o700, uid: UID},
		{name: "tmp/", dir: true, mode: 0o1777},
	})
}

// countCerts counts the parseable certificates of a PEM bundle.
func countCerts(pemData []byte) int {
	n := 0
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			return n
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err == nil {
				n++
			}
		}
	}
}

type file struct {
	name string
	dir  bool
	mode int64
	uid  int
	data []byte
}

// layer writes files into one tar layer, every entry stamped with created
// so that the layer's digest depends only on the content.
func layer(created time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: created.UTC(), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if f.uid != 0 {
			h.Uname, h.Gname = UserName, UserName
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("ociimage: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("ociimage: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// WriteLayout adds each index to the OCI image layout at dir (created if
// missing), named with the given tags ("org.opencontainers.image.ref.name").
func WriteLayout(dir string, images map[string]v1.ImageIndex) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
	}
	refs := make([]string, 0, len(images))
	for r := range images {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		if err := p.AppendIndex(images[ref], layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref,
		})); err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
	}
	return nil
}

// WriteTarball writes the images for one platform as a tarball that
// `docker load` (and `kind load image-archive`) read, each under its tags.
func WriteTarball(path, platform string, images map[string]v1.ImageIndex) error {
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	refs := map[name.Reference]v1.Image{}
	for ref, idx := range images {
		img, err := ForPlatform(idx, *plat)
		if err != nil {
			return err
		}
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
		refs[tag] = img
	}
	if err := tarball.MultiRefWriteToFile(path, refs); err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	return nil
}

// ForPlatform picks the image of one platform from an index.
func ForPlatform(idx v1.ImageIndex, plat v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(plat) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("ociimage: no image for %s", plat.String())
}
