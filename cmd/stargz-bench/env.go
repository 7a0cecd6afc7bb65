// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stargz-store/stargz-store/internal/podmanconf"
)

// bench holds the environment of one benchmark: work directories, the
// registry and its WAN proxy, podman instances and the store.
type bench struct {
	opt     options
	work    string // /var/tmp/sgzb.XXXX
	run     string // /run/sgzb/XXXX: short, for podman runroots
	id      string
	regAddr string // the registry itself (pushes, conversion)
	wanAddr string // the registry behind the WAN proxy (pulls, the store)
	proxy   *Proxy
	regConf string // registries.conf
	undo    cleanups

	p5Root string // the chroot's root (host path) if Podman 5 is used
	p5Dir  string // this bench's directory inside the chroot (chroot path)
	// mountPodman5 mounts what the chroot lacks (tests/podman5/setup.sh mount).
	mountPodman5 func(context.Context) error

	storeN      int
	canOptimize bool
}

func (b *bench) hostEnv(extra ...string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(b.work, "home"),
		"CONTAINERS_REGISTRIES_CONF=" + b.regConf,
		"REGISTRY_AUTH_FILE=" + filepath.Join(b.work, "no-auth.json"),
	}
	return append(env, extra...)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitHTTP(ctx context.Context, url string, d *daemon) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			return nil
		}
		if !d.alive() {
			return fmt.Errorf("%s exited: %v: %s", d.name, d.err, d.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no answer at %s", d.name, url)
}

// startRegistry runs docker-registry on a free loopback port and the WAN
// proxy in front of it.
func (b *bench) startRegistry(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(b.work, "registry")
	conf := filepath.Join(b.work, "registry.yml")
	y := fmt.Sprintf(`version: 0.1
log:
  level: warn
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, dir, addr)
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	// Not hostEnv: the registry reads REGISTRY_* variables as configuration
	// (REGISTRY_AUTH_FILE would be its auth section).
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + filepath.Join(b.work, "home")}
	d, err := startDaemon("docker-registry", filepath.Join(b.work, "registry.log"), env, "docker-registry", "serve", conf)
	if err != nil {
		return err
	}
	b.undo.add(d.stop)
	if err := waitHTTP(ctx, "http://"+addr+"/v2/", d); err != nil {
		return err
	}
	b.regAddr = addr

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	b.wanAddr = ln.Addr().String()
	b.proxy = NewProxy(addr, b.opt.proxyConfig(true))
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.proxy.Run(pctx, ln); err != nil {
			fmt.Fprintln(os.Stderr, "stargz-bench: proxy:", err)
		}
	}()
	b.undo.add(func() { cancel(); <-done })

	rc := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n\n[[registry]]\nlocation = %q\ninsecure = true\n", b.regAddr, b.wanAddr)
	if err := os.WriteFile(b.regConf, []byte(rc), 0o644); err != nil {
		return fmt.Errorf("registries.conf: %w", err)
	}
	return nil
}

// podman is one Podman instance with its own containers.conf and
// storage.conf (roots set there, never by flags: Podman 4.3.1 drops
// additionallayerstores when --root is given).
type podman struct {
	b        *bench
	name     string
	p5       bool
	dir      string // as podman sees it (a chroot path for Podman 5)
	runroot  string // as podman sees it
	als      string // additional layer store mount point as podman sees it
	gen      int    // bumps on every reset: fresh roots
	hostBase string // host prefix (the chroot root for Podman 5, "" otherwise)
}

func (b *bench) newPodman(name string, p5 bool, als string) (*podman, error) {
	p := &podman{b: b, name: name, p5: p5, als: als}
	if p5 {
		p.hostBase = b.p5Root
		p.dir = filepath.Join(b.p5Dir, "pm-"+name)
		p.runroot = "/run/sgzb/" + b.id + "/" + name
	} else {
		p.dir = filepath.Join(b.work, "pm-"+name)
		p.runroot = filepath.Join(b.run, name)
	}
	return p, p.reset()
}

func (p *podman) host(path string) string { return p.hostBase + path }

func (p *podman) root() string { return fmt.Sprintf("%s/root%d", p.dir, p.gen) }

// reset gives the instance empty storage: its roots are unmounted and
// removed and new ones are configured.
func (p *podman) reset() error {
	if err := removeTree(p.host(p.root())); err != nil {
		return err
	}
	if err := removeTree(p.host(p.runroot)); err != nil {
		return err
	}
	p.gen++
	for _, d := range []string{p.root(), p.runroot} {
		if err := os.MkdirAll(p.host(d), 0o755); err != nil {
			return fmt.Errorf("podman %s: %w", p.name, err)
		}
	}
	files := map[string][]byte{
		"containers.conf": podmanconf.ContainersConf(p.runroot + "/libpod"),
		"storage.conf":    podmanconf.StorageConf(p.root(), p.runroot+"/storage", p.als),
		"no-auth.json":    []byte(podmanconf.NoAuth),
	}
	for name, data := range files {
		if err := os.WriteFile(p.host(p.dir+"/"+name), data, 0o644); err != nil {
			return fmt.Errorf("podman %s: %w", p.name, err)
		}
	}
	return nil
}

// remove deletes the instance's storage for good.
func (p *podman) remove() {
	removeTree(p.host(p.dir))
	removeTree(p.host(p.runroot))
}

// exec runs podman ARGS with the instance's files.
func (p *podman) exec(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	env := []string{
		"CONTAINERS_CONF=" + p.dir + "/containers.conf",
		"CONTAINERS_STORAGE_CONF=" + p.dir + "/storage.conf",
		"REGISTRY_AUTH_FILE=" + p.dir + "/no-auth.json",
	}
	if p.p5 {
		a := append([]string{p.b.p5Root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
			"PODMAN_IGNORE_CGROUPSV1_WARNING=1", "CONTAINERS_REGISTRIES_CONF=" + p.b.p5Dir + "/registries.conf"}, env...)
		a = append(a, "podman")
		a = append(a, args...)
		return command(ctx, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, "chroot", a...)
	}
	return command(ctx, p.b.hostEnv(env...), "podman", args...)
}

// store is a running stargz-store with a fresh root.
type store struct {
	d    *daemon
	mnt  string // host path
	root string
	log  string
	// keepDir receives a copy of the log when the store stops (-logs).
	keepDir string
}

// startStore starts stargz-store on mnt (a host path) with a fresh --root
// and an empty configuration, logging at debug level.
func (b *bench) startStore(ctx context.Context, mnt string) (*store, error) {
	s := &store{mnt: mnt, root: filepath.Join(b.work, fmt.Sprintf("store-root-%d", b.storeN+1)), keepDir: b.opt.logs}
	return s, b.runStore(ctx, s)
}

// restartStore stops s's daemon, keeping its --root (and so its cache),
// and starts a new one on the same root and mount point: a store that
// restarts finds its cache unverified by the new process.
func (b *bench) restartStore(ctx context.Context, s *store) error {
	s.halt()
	return b.runStore(ctx, s)
}

// runStore starts the daemon of s, with a new log, and waits for its mount.
func (b *bench) runStore(ctx context.Context, s *store) error {
	b.storeN++
	s.log = filepath.Join(b.work, fmt.Sprintf("store-%d.log", b.storeN))
	mnt := s.mnt
	for _, d := range []string{s.root, mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	// The store refuses a mount point whose parent other users can enter.
	if err := os.Chmod(filepath.Dir(mnt), 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	conf := filepath.Join(b.work, "store.toml")
	var cfg []byte
	if b.opt.storeConfig != "" {
		var err error
		if cfg, err = os.ReadFile(b.opt.storeConfig); err != nil {
			return fmt.Errorf("store config: %w", err)
		}
	}
	if err := os.WriteFile(conf, cfg, 0o644); err != nil {
		return fmt.Errorf("store config: %w", err)
	}
	d, err := startDaemon("stargz-store", s.log, b.hostEnv(), b.opt.storeBin,
		"--root", s.root, "--config", conf, "--log-level", "debug", mnt)
	if err != nil {
		return err
	}
	s.d = d
	deadline := time.Now().Add(30 * time.Second)
	for !isMountPoint(mnt) {
		if !d.alive() || time.Now().After(deadline) {
			s.stop()
			b2, _ := os.ReadFile(s.log)
			return fmt.Errorf("stargz-store did not mount %s: %s", mnt, tail(b2, 800))
		}
		select {
		case <-ctx.Done():
			s.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// stop stops the store by PID, unmounts if it did not, removes its root.
func (s *store) stop() {
	if s == nil {
		return
	}
	s.halt()
	os.RemoveAll(s.root)
}

// halt stops the daemon by PID and unmounts if it did not, keeping the
// root; the log is copied to keepDir.
func (s *store) halt() {
	s.d.stop()
	umountBelow(s.mnt)
	if s.keepDir != "" {
		if err := copyFile(filepath.Join(s.keepDir, filepath.Base(s.log)), s.log); err != nil {
			fmt.Fprintln(os.Stderr, "stargz-bench: keep store log:", err)
		}
	}
}

// storeStats is what a store's debug log tells about one run.
type storeStats struct {
	Uses       int   `json:"uses"`        // "use" notifications (layers served lazily)
	NotLazy    int   `json:"not_lazy"`    // "layer not served lazily"
	Fetches    int   `json:"fetches"`     // "chunks fetched" (or older "chunk fetched") records
	ChunkBytes int64 `json:"chunk_bytes"` // their compressed bytes
	Background int   `json:"background"`  // "layer fetched in the background" records
	Prefetched int   `json:"prefetched"`  // "layer prefetched" records
}

func parseStoreLog(path string) (storeStats, error) {
	var st storeStats
	f, err := os.Open(path)
	if err != nil {
		return st, fmt.Errorf("store log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Msg   string `json:"msg"`
			Bytes int64  `json:"bytes"`
			Refs  *int   `json:"refs"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		switch r.Msg {
		case "use":
			if r.Refs != nil {
				st.Uses++
			}
		case "layer not served lazily":
			st.NotLazy++
		case "chunk fetched", "chunks fetched":
			st.Fetches++
			st.ChunkBytes += r.Bytes
		case "layer fetched in the background":
			st.Background++
		case "layer prefetched":
			st.Prefetched++
		}
	}
	return st, sc.Err()
}

func cleanPath(p string) string {
	p = strings.TrimPrefix(p, "./")
	return strings.TrimPrefix(filepath.Clean("/"+p), "/")
}
