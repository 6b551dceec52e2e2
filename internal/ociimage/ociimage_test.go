package ociimage

import (
	"archive/tar"
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// testCA writes a self-signed certificate, so that the test does not depend
// on the machine's CA bundle.
func testCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func fixture(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gdprgate")
	if err := os.WriteFile(bin, []byte("\x7fELF not really a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := testCA(t, dir)
	return Options{
		Binaries: map[string]string{"linux/amd64": bin, "linux/arm64": bin},
		Version:  "1.2.3", Revision: "abc", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), CABundle: ca,
	}
}

func TestBuildIsReproducible(t *testing.T) {
	o := fixture(t)
	a, err := Gdprgate.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Gdprgate.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("two builds of the same inputs: %s and %s", da, db)
	}
	o.Version = "1.2.4"
	c, _ := Gdprgate.Build(o)
	if dc, _ := c.Digest(); dc == da {
		t.Fatal("another version, the same digest")
	}
}

func TestImageRunsAsNonRootWithCertificatesAndLabels(t *testing.T) {
	o := fixture(t)
	idx, err := Gdprgate.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	// Written to a layout and read back, as a registry or runtime would.
	dir := t.TempDir()
	if err := WriteLayout(dir, map[string]v1.ImageIndex{Gdprgate.Repository + ":1.2.3": idx}); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, _ := p.ImageIndex()
	im, _ := top.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != Gdprgate.Repository+":1.2.3" {
		t.Fatalf("layout index: %+v", im.Manifests)
	}
	inner, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := ForPlatform(inner, v1.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.Architecture != arch || cf.OS != "linux" || !cf.Created.Time.Equal(o.Created) {
			t.Errorf("%s: platform %s/%s created %s", arch, cf.OS, cf.Architecture, cf.Created)
		}
		if !slices.Equal(c.Entrypoint, []string{"/gdprgate"}) || !slices.Equal(c.Cmd, []string{"serve"}) || c.User != "65532:65532" {
			t.Errorf("%s: entrypoint %v cmd %v user %q", arch, c.Entrypoint, c.Cmd, c.User)
		}
		if c.Labels["org.opencontainers.image.version"] != "1.2.3" || c.Labels["org.opencontainers.image.revision"] != "abc" ||
			c.Labels["org.opencontainers.image.source"] != Source {
			t.Errorf("%s: labels %v", arch, c.Labels)
		}
		if !slices.Contains(c.Env, "SSL_CERT_FILE="+CABundlePath) || !slices.Contains(c.Env, "GDPRGATE_ADMIN_ADDR=0.0.0.0:9192") {
			t.Errorf("%s: env %v", arch, c.Env)
		}
		if _, ok := c.ExposedPorts["9191/tcp"]; !ok {
			t.Errorf("%s: ports %v", arch, c.ExposedPorts)
		}
		files := extract(t, img)
		if f := files["gdprgate"]; f.h == nil || f.h.Mode != 0o755 || f.h.Uid != 0 {
			t.Errorf("%s: binary %+v", arch, f.h)
		}
		if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:nonroot:/home/nonroot:") ||
			!strings.Contains(string(files["etc/group"].data), "nonroot:x:65532:") {
			t.Errorf("%s: passwd %q group %q", arch, files["etc/passwd"].data, files["etc/group"].data)
		}
		if countCerts(files["etc/ssl/certs/ca-certificates.crt"].data) == 0 {
			t.Errorf("%s: no CA certificate in the image", arch)
		}
		if h := files["home/nonroot"].h; h == nil || h.Uid != UID || h.Mode != 0o700 {
			t.Errorf("%s: home %+v", arch, h)
		}
	}
}

type entry struct {
	h    *tar.Header
	data []byte
}

func extract(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = entry{h, b}
	}
}

func TestBuildRefusesABundleWithoutCertificates(t *testing.T) {
	o := fixture(t)
	o.CABundle = filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(o.CABundle, []byte("nothing"), 0o644)
	if _, err := Gdprgate.Build(o); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("%v", err)
	}
}

// dockerfile is what the final stage of a Dockerfile declares.
type dockerfile struct {
	from                  string
	entrypoint, cmd       []string
	user, workdir         string
	env, labels           map[string]string
	ports, copyTo, chowns []string
}

// parseDockerfile reads the instructions this project's Dockerfile uses.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" && cur == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	var d dockerfile
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d = dockerfile{from: strings.Fields(rest)[0], env: map[string]string{}, labels: map[string]string{}}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT must be JSON: %v", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &d.cmd); err != nil {
				t.Fatalf("CMD must be JSON: %v", err)
			}
		case "USER":
			d.user = rest
		case "WORKDIR":
			d.workdir = rest
		case "EXPOSE":
			d.ports = strings.Fields(rest)
		case "ENV":
			for k, v := range pairs(rest) {
				d.env[k] = v
			}
		case "LABEL":
			maps.Copy(d.labels, pairs(rest))
		case "COPY":
			f := strings.Fields(rest)
			d.copyTo = append(d.copyTo, f[len(f)-1])
			for _, a := range f {
				if strings.HasPrefix(a, "--chown=") {
					d.chowns = append(d.chowns, f[len(f)-1]+"="+strings.TrimPrefix(a, "--chown="))
				}
			}
		}
	}
	return d
}

// pairs splits `a=1 b="two words"`.
func pairs(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, _ := strings.Cut(s, "=")
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`) + 1
			v, s = rest[1:end], rest[end+1:]
		} else {
			v, s, _ = strings.Cut(rest, " ")
		}
		out[k] = v
	}
	return out
}

func TestDockerfileDeclaresTheImageMakeImageBuilds(t *testing.T) {
	d := parseDockerfile(t, "../../Dockerfile")
	o := fixture(t)
	idx, err := Gdprgate.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := ForPlatform(idx, v1.Platform{OS: "linux", Architecture: "amd64"})
	cf, _ := img.ConfigFile()
	c := cf.Config
	if d.from != "scratch" {
		t.Errorf("Dockerfile's image is FROM %s, make image's from scratch", d.from)
	}
	if !slices.Equal(d.entrypoint, c.Entrypoint) || !slices.Equal(d.cmd, c.Cmd) || d.user != c.User || d.workdir != c.WorkingDir {
		t.Errorf("Dockerfile: entrypoint %v cmd %v user %s workdir %s; image: %v %v %s %s", d.entrypoint, d.cmd, d.user, d.workdir, c.Entrypoint, c.Cmd, c.User, c.WorkingDir)
	}
	var env []string
	for k, v := range d.env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	imgEnv := slices.Sorted(slices.Values(c.Env))
	if !slices.Equal(env, imgEnv) {
		t.Errorf("ENV %v, image env %v", env, imgEnv)
	}
	if ports := slices.Sorted(maps.Keys(c.ExposedPorts)); !slices.Equal(slices.Sorted(slices.Values(d.ports)), ports) {
		t.Errorf("EXPOSE %v, image ports %v", d.ports, ports)
	}
	for k, v := range c.Labels {
		switch k {
		case "org.opencontainers.image.created", "org.opencontainers.image.revision":
			continue // stamped by the builder (Docker sets the created time itself)
		case "org.opencontainers.image.version":
			v = "${VERSION}"
		}
		if d.labels[k] != v {
			t.Errorf("LABEL %s=%q, image has %q", k, d.labels[k], v)
		}
	}
	files := extract(t, img)
	for _, to := range d.copyTo {
		if _, ok := files[strings.TrimPrefix(to, "/")]; !ok {
			t.Errorf("Dockerfile copies %s, which the image lacks", to)
		}
	}
	for name, f := range files {
		parent := f.h.Typeflag == tar.TypeDir && slices.ContainsFunc(d.copyTo, func(to string) bool { return strings.HasPrefix(to, "/"+name+"/") })
		if !parent && !slices.Contains(d.copyTo, "/"+name) {
			t.Errorf("the image has %s, which the Dockerfile does not copy", name)
		}
	}
	if !slices.Contains(d.chowns, Home+"="+User) {
		t.Errorf("the Dockerfile does not give %s to %s: %v", Home, User, d.chowns)
	}
}
