package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/ociimage"
)

// TestMakeImageBuildsImagesWhoseBinaryRuns does what `make image` does for
// this machine's platform, reads the layout and the tarball back, checks
// the config, and runs the gdprgate binary taken out of the image's layers.
func TestMakeImageBuildsImagesWhoseBinaryRuns(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the binaries with")
	}
	out := t.TempDir()
	ca := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(ca); err != nil {
		t.Skip("no CA bundle on this machine") // `make test-deps` installs ca-certificates
	}
	platform := "linux/" + runtime.GOARCH
	var stdout, stderr bytes.Buffer
	code := cmdline.Execute(context.Background(), newRoot(), []string{"--out", out, "--platforms", platform,
		"--version", "9.8.7-test", "--trimpath=false", "--created", "2026-02-03T04:05:06Z", "--ca-bundle", ca}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "ghcr.io/gdprgate/gdprgate:9.8.7-test") || !strings.Contains(stdout.String(), "docker load -i") {
		t.Errorf("summary:\n%s", stdout.String())
	}

	p, err := layout.FromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := top.IndexManifest()
	refs := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		refs[d.Annotations["org.opencontainers.image.ref.name"]] = d.Digest
	}
	for _, want := range []string{"ghcr.io/gdprgate/gdprgate:9.8.7-test", "ghcr.io/gdprgate/gdprgate:latest",
		"ghcr.io/gdprgate/example-crm:9.8.7-test", "ghcr.io/gdprgate/example-crm:latest"} {
		if _, ok := refs[want]; !ok {
			t.Errorf("layout lacks %s: %v", want, refs)
		}
	}
	idx, err := top.ImageIndex(refs["ghcr.io/gdprgate/gdprgate:9.8.7-test"])
	if err != nil {
		t.Fatal(err)
	}
	plat, _ := v1.ParsePlatform(platform)
	img, err := ociimage.ForPlatform(idx, *plat)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.User != ociimage.User || cf.Config.Entrypoint[0] != "/gdprgate" || cf.Config.Labels["org.opencontainers.image.version"] != "9.8.7-test" {
		t.Errorf("config %+v", cf.Config)
	}

	// The tarball holds the same image for docker load.
	tag, _ := name.NewTag("ghcr.io/gdprgate/gdprgate:latest")
	timg, err := tarball.ImageFromPath(filepath.Join(out, "images.tar"), &tag)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if got, _ := timg.ConfigName(); got != want {
		t.Errorf("tarball's image config %s, layout's %s", got, want)
	}

	bin := filepath.Join(t.TempDir(), "gdprgate")
	extractFile(t, img, "gdprgate", bin)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--version"}, "gdprgate 9.8.7-test"},
		{[]string{"policy", "test"}, ", 0 failed"}, // the embedded default policy and its tests work
	} {
		b, err := exec.Command(bin, c.args...).CombinedOutput()
		if err != nil || !strings.Contains(string(b), c.want) {
			t.Errorf("%v: %v\n%s", c.args, err, b)
		}
	}
}

func extractFile(t *testing.T, img v1.Image, name, to string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the image: %v", name, err)
		}
		if h.Name != name {
			continue
		}
		f, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
}
