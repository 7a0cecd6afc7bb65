// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// image is one benchmark image: its rootfs tarball, workload and the
// references it was pushed under.
type image struct {
	Name     string   `json:"name"`
	Workload []string `json:"workload"`
	rootfs   string   // tarball
	bigFile  string   // for the warm re-read test: the file's path in the image

	GZ         string `json:"gzip_ref"` // through the WAN proxy
	ESGZ       string `json:"estargz_ref"`
	OPT        string `json:"optimized_ref,omitempty"`
	GZSize     int64  `json:"gzip_size"` // compressed layer bytes
	ESGZSize   int64  `json:"estargz_size"`
	OPTSize    int64  `json:"optimized_size,omitempty"`
	RootfsSize int64  `json:"rootfs_size"` // uncompressed file bytes
	// The files the workload reads and their sizes (see workloadReads).
	ReadFiles []string `json:"read_files,omitempty"`
	ReadBytes int64    `json:"read_bytes,omitempty"`
	OptNote   string   `json:"optimized_note,omitempty"`
}

// pythonRecipe is what the Debian + python3 rootfs is built from; its hash
// keys the cached tarball.
var pythonRecipe = []string{"debootstrap", "--variant=minbase", "--include=python3",
	"bookworm", "ROOT", "http://deb.debian.org/debian", "#trim:apt-lists,apt-archives,docs v1"}

func recipeKey(recipe []string) string {
	h := sha256.Sum256([]byte(strings.Join(recipe, "\x00")))
	return hex.EncodeToString(h[:8])
}

// pythonRootfs returns the cached Debian + python3 tarball, building it
// with debootstrap if the cache has none for the recipe.
func (b *bench) pythonRootfs(ctx context.Context) (string, error) {
	cache := b.opt.cacheDir
	tarball := filepath.Join(cache, "python-"+recipeKey(pythonRecipe)+".tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, "build-")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer removeTree(tmp)
	root := filepath.Join(tmp, "rootfs")
	args := make([]string, 0, len(pythonRecipe)-1)
	for _, a := range pythonRecipe[1 : len(pythonRecipe)-1] {
		args = append(args, strings.ReplaceAll(a, "ROOT", root))
	}
	fmt.Fprintf(os.Stderr, "building the Debian + python3 rootfs (debootstrap, a few minutes; cached in %s)\n", cache)
	if _, err := command(ctx, b.hostEnv(), "debootstrap", args...); err != nil {
		return "", err
	}
	for _, g := range []string{"var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*"} {
		ms, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range ms {
			os.RemoveAll(m)
		}
	}
	part := tarball + ".part"
	if _, err := command(ctx, b.hostEnv(), "tar", "-C", root, "--numeric-owner", "--xattrs", "-cf", part, "."); err != nil {
		return "", err
	}
	if err := os.Rename(part, tarball); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	return tarball, nil
}

// busyboxRootfs writes a tarball with busybox-static and, if big > 0, a
// file of big random bytes at data/big.bin.
func busyboxRootfs(path string, big int64) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("bin") },
		func() error { return dir("etc") },
		func() error { return dir("tmp") },
		func() error { return file("bin/busybox", 0o755, bb) },
		func() error { return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")) },
	}
	for _, a := range []string{"sh", "true", "cat", "ls", "dd", "date", "wc"} {
		steps = append(steps, func() error {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
		})
	}
	if big > 0 {
		steps = append(steps, func() error { return dir("data") }, func() error {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data/big.bin", Mode: 0o644, Size: big}); err != nil {
				return err
			}
			_, err := io.CopyN(tw, rand.Reader, big)
			return err
		})
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("rootfs %s: %w", path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("rootfs %s: %w", path, err)
	}
	return f.Close()
}

// tarSize sums the sizes of a tarball's regular files.
func tarSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("tar listing: %w", err)
	}
	defer f.Close()
	var total int64
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("tar listing %s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			total += h.Size
		}
	}
}

// extractFile copies one file of a tarball to dst (for the local-disk read).
func extractFile(tarball, name, dst string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return fmt.Errorf("extract %s from %s: %w", name, tarball, err)
		}
		if cleanPath(h.Name) != name {
			continue
		}
		out, err := os.Create(dst)
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("extract: %w", err)
		}
		return out.Close()
	}
}

// prepare imports the rootfs with the build instance, pushes it as a gzip
// image straight to the registry, converts it to eStargz (and optimizes it
// if the store can), and records sizes. References in img name the WAN
// proxy's address; the registry's content is the same behind both.
func (b *bench) prepare(ctx context.Context, build *podman, img *image) error {
	var err error
	if img.RootfsSize, err = tarSize(img.rootfs); err != nil {
		return err
	}
	local := "localhost/bench/" + img.Name + ":latest"
	if _, err := build.exec(ctx, "import", "-q", "--change", `CMD ["/bin/sh"]`, img.rootfs, local); err != nil {
		return err
	}
	direct := func(tag string) string { return b.regAddr + "/bench/" + img.Name + ":" + tag }
	wan := func(tag string) string { return b.wanAddr + "/bench/" + img.Name + ":" + tag }
	if _, err := build.exec(ctx, "push", "-q", "--tls-verify=false", local, "docker://"+direct("gzip")); err != nil {
		return err
	}
	if _, err := build.exec(ctx, "rmi", "-f", local); err != nil {
		return err
	}
	if _, err := command(ctx, b.hostEnv(), b.opt.storeBin, "convert", "--plain-http", direct("gzip"), direct("esgz")); err != nil {
		return err
	}
	img.GZ, img.ESGZ = wan("gzip"), wan("esgz")
	if img.GZSize, err = b.imageSize(ctx, img.Name, "gzip"); err != nil {
		return err
	}
	if img.ESGZSize, err = b.imageSize(ctx, img.Name, "esgz"); err != nil {
		return err
	}
	if !b.canOptimize {
		img.OptNote = "n/a: stargz-store has no optimize subcommand"
		return nil
	}
	work := filepath.Join(b.work, "optimize")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	defer removeTree(work)
	args := expandOptimize(b.opt.optimizeArgs, direct("gzip"), direct("opt"), work, img.Workload)
	if out, err := command(ctx, b.hostEnv(), b.opt.storeBin, args...); err != nil {
		img.OptNote = "n/a: stargz-store optimize failed: " + tail(out, 300)
		return nil
	}
	img.OPT = wan("opt")
	if img.OPTSize, err = b.imageSize(ctx, img.Name, "opt"); err != nil {
		return err
	}
	return nil
}

// expandOptimize fills the -optimize-args template: {src}, {dst}, {work}
// and {cmd} (the workload, as separate arguments).
func expandOptimize(tmpl, src, dst, work string, workload []string) []string {
	var out []string
	for _, f := range strings.Fields(tmpl) {
		switch f {
		case "{src}":
			out = append(out, src)
		case "{dst}":
			out = append(out, dst)
		case "{work}":
			out = append(out, work)
		case "{cmd}":
			out = append(out, workload...)
		default:
			out = append(out, f)
		}
	}
	return out
}

type layerDesc struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// manifest fetches an image manifest from the registry directly.
func (b *bench) manifest(ctx context.Context, name, tag string) ([]layerDesc, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.regAddr+"/v2/bench/"+name+"/manifests/"+tag, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("manifest %s:%s: %w", name, tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest %s:%s: %s", name, tag, resp.Status)
	}
	var m struct {
		Layers []layerDesc `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest %s:%s: %w", name, tag, err)
	}
	return m.Layers, nil
}

func (b *bench) imageSize(ctx context.Context, name, tag string) (int64, error) {
	ls, err := b.manifest(ctx, name, tag)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range ls {
		n += l.Size
	}
	return n, nil
}

// workloadReads finds the files the workload reads: it extracts the rootfs
// into a directory, sets every regular file's atime to 0 (before its mtime,
// so relatime updates it on the next read, mmap or exec), runs the workload
// there with chroot (no podman: overlayfs opens lower files O_NOATIME) and
// lists the files whose atime changed. Whole file sizes are summed, so for
// a file read in part the sum is an upper bound.
func (b *bench) workloadReads(ctx context.Context, img *image) error {
	dir, err := os.MkdirTemp(b.work, "reads-")
	if err != nil {
		return fmt.Errorf("workload reads: %w", err)
	}
	defer removeTree(dir)
	if _, err := command(ctx, b.hostEnv(), "tar", "-C", dir, "--numeric-owner", "-xf", img.rootfs); err != nil {
		return err
	}
	epoch := time.Unix(0, 0)
	walk := func(f func(path string, st *syscall.Stat_t) error) error {
		return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				return err
			}
			return f(path, &st)
		})
	}
	err = walk(func(path string, st *syscall.Stat_t) error {
		return os.Chtimes(path, epoch, time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	})
	if err != nil {
		return fmt.Errorf("workload reads: %w", err)
	}
	if _, err := command(ctx, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"},
		"chroot", append([]string{dir}, img.Workload...)...); err != nil {
		return fmt.Errorf("workload reads: %w", err)
	}
	img.ReadFiles, img.ReadBytes = nil, 0
	err = walk(func(path string, st *syscall.Stat_t) error {
		if st.Atim.Sec != 0 || st.Atim.Nsec != 0 {
			rel, _ := filepath.Rel(dir, path)
			img.ReadFiles = append(img.ReadFiles, rel)
			img.ReadBytes += st.Size
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("workload reads: %w", err)
	}
	return nil
}
