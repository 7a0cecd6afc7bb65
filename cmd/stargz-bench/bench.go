// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stargz-store/stargz-store/refspec"
)

var execLookPath = exec.LookPath

// Modes, in table order.
const (
	modeBaseline  = "pull+run gzip (podman 4)"
	modeLazy      = "lazy eStargz (podman 4, Gen A)"
	modeOptimized = "lazy optimized (podman 4)"
	modeLazyP5    = "lazy eStargz (podman 5, Gen B)"
)

type runResult struct {
	Seconds     float64 `json:"seconds"`
	PullSeconds float64 `json:"pull_seconds,omitempty"`
	// LocalRunSeconds (baseline only): `podman run` again, the image now
	// local: Podman's own floor, no network.
	LocalRunSeconds float64     `json:"local_run_seconds,omitempty"`
	Net             Counters    `json:"net"`
	Store           *storeStats `json:"store,omitempty"`
	StoreLog        string      `json:"store_log,omitempty"` // its name under -logs
	Err             string      `json:"error,omitempty"`
}

type modeResult struct {
	Image  string      `json:"image"`
	Mode   string      `json:"mode"`
	Runs   []runResult `json:"runs"`
	Note   string      `json:"note,omitempty"`
	OK     int         `json:"ok_runs"`
	Median float64     `json:"median_seconds"`
	Min    float64     `json:"min_seconds"`
	Max    float64     `json:"max_seconds"`
	// RatioToBaseline is Median over the baseline's median.
	RatioToBaseline float64 `json:"ratio_to_baseline,omitempty"`
	BytesDown       int64   `json:"median_bytes_down"`
	BytesUp         int64   `json:"median_bytes_up"`
	Requests        int64   `json:"median_requests"`
	// FetchedOfImage is BytesDown over the compressed size of the image run.
	FetchedOfImage float64 `json:"fetched_of_image"`
	// ReadBytes and FetchedOverRead: see docs/bench.md.
	ReadBytes       int64   `json:"median_read_bytes,omitempty"`
	FetchedOverRead float64 `json:"fetched_over_read,omitempty"`
	// FetchedOverChunks is BytesDown over the compressed bytes of the chunks
	// the store fetched (its "chunk fetched" records): the overhead of
	// manifests, TOCs and HTTP on top of the file data.
	FetchedOverChunks float64 `json:"fetched_over_chunks,omitempty"`
	// LocalRun is the median LocalRunSeconds (baseline only).
	LocalRun float64 `json:"median_local_run_seconds,omitempty"`
}

type report struct {
	Started   time.Time     `json:"started"`
	Seconds   float64       `json:"seconds"`
	Config    configReport  `json:"config"`
	Emulation *emulation    `json:"emulation,omitempty"`
	Images    []*image      `json:"images"`
	Results   []*modeResult `json:"results"`
	Warm      *warmResult   `json:"warm_reread,omitempty"`
	Targets   []target      `json:"targets"`
	Notes     []string      `json:"notes,omitempty"`
}

type configReport struct {
	Runs     int     `json:"runs"`
	DelayMs  float64 `json:"delay_ms"`
	RateMbit float64 `json:"rate_mbit"`
	Store    string  `json:"store_version"`
	Podman4  string  `json:"podman4"`
	Podman5  string  `json:"podman5,omitempty"`
	CPUs     int     `json:"cpus"`
}

type target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Ours  float64 `json:"ours"`
	Met   bool    `json:"met"`
	Known bool    `json:"known"`
}

func secs(d time.Duration) float64 { return d.Seconds() }

// benchmark runs everything; the report it returns is partial on error.
func (b *bench) benchmark(ctx context.Context, log io.Writer) (*report, error) {
	rep := &report{Started: time.Now().UTC()}
	begin := time.Now()
	defer func() { rep.Seconds = time.Since(begin).Seconds() }()
	rep.Config = configReport{Runs: b.opt.runs, DelayMs: float64(b.opt.delay) / 1e6, RateMbit: b.opt.rateMbit, CPUs: numCPU()}
	say := func(f string, a ...any) { fmt.Fprintf(log, "== "+f+"\n", a...) }

	if out, err := command(ctx, nil, b.opt.storeBin, "version"); err == nil {
		rep.Config.Store = strings.TrimSpace(string(out))
	}
	if out, err := command(ctx, b.hostEnv(), "podman", "--version"); err == nil {
		rep.Config.Podman4 = strings.TrimSpace(string(out))
	}
	// Two arguments: a store without the subcommand refuses them as
	// mount points instead of serving.
	if help, _ := command(ctx, nil, b.opt.storeBin, "optimize", "-h"); strings.Contains(string(help), "usage: stargz-store optimize") {
		b.canOptimize = true
	}

	say("registry and WAN proxy (delay %v each way, %.0f Mbit/s each way)", b.opt.delay, b.opt.rateMbit)
	if err := b.startRegistry(ctx); err != nil {
		return rep, err
	}
	build, err := b.newPodman("build", false, "")
	if err != nil {
		return rep, err
	}
	b.undo.add(build.remove)

	// Images.
	var imgs []*image
	for _, name := range b.opt.images {
		img := &image{Name: name}
		switch name {
		case "busybox":
			img.Workload = []string{"busybox", "true"}
			img.rootfs = filepath.Join(b.work, "busybox.tar")
			if err := busyboxRootfs(img.rootfs, 0); err != nil {
				return rep, err
			}
		case "python":
			img.Workload = []string{"python3", "-c", "print(1)"}
			if img.rootfs, err = b.pythonRootfs(ctx); err != nil {
				return rep, err
			}
		}
		say("image %s: import, push (gzip), convert (eStargz)", name)
		if err := b.prepare(ctx, build, img); err != nil {
			return rep, err
		}
		if err := b.workloadReads(ctx, img); err != nil {
			return rep, err
		}
		fmt.Fprintf(log, "   the workload reads %d files, %s\n", len(img.ReadFiles), mib(img.ReadBytes))
		imgs = append(imgs, img)
		rep.Images = append(rep.Images, img)
	}
	var big *image
	if !b.opt.skipWarm {
		big = &image{Name: "big", rootfs: filepath.Join(b.work, "big.tar"), bigFile: "data/big.bin", Workload: []string{"true"}}
		say("image big: busybox + %d MiB of random data, for the warm re-read", b.opt.bigMiB)
		if err := busyboxRootfs(big.rootfs, int64(b.opt.bigMiB)<<20); err != nil {
			return rep, err
		}
		if err := b.prepare(ctx, build, big); err != nil {
			return rep, err
		}
		rep.Images = append(rep.Images, big)
	}
	if err := build.reset(); err != nil {
		return rep, err
	}

	say("emulation check")
	if rep.Emulation, err = b.checkEmulation(ctx, big, imgs); err != nil {
		return rep, err
	}
	fmt.Fprint(log, rep.Emulation.String())

	// Podman instances and the store's mount points.
	plain, err := b.newPodman("p", false, "")
	if err != nil {
		return rep, err
	}
	b.undo.add(plain.remove)
	mnt4 := filepath.Join(b.work, "mnt")
	lazy4, err := b.newPodman("s", false, mnt4)
	if err != nil {
		return rep, err
	}
	b.undo.add(lazy4.remove)
	var lazy5 *podman
	p5Note := "skipped (-skip-podman5)"
	if !b.opt.skipP5 {
		if err := b.setupPodman5(ctx); err != nil {
			p5Note = "n/a: " + err.Error()
			rep.Notes = append(rep.Notes, "podman 5: "+err.Error())
		} else {
			if lazy5, err = b.newPodman("s5", true, b.p5Dir+"/mnt"); err != nil {
				return rep, err
			}
			b.undo.add(lazy5.remove)
			if out, err := lazy5.exec(ctx, "--version"); err == nil {
				rep.Config.Podman5 = strings.TrimSpace(string(out))
			}
		}
	}

	results := map[string]*modeResult{}
	get := func(img *image, mode string) *modeResult {
		k := img.Name + "\x00" + mode
		if results[k] == nil {
			results[k] = &modeResult{Image: img.Name, Mode: mode}
			rep.Results = append(rep.Results, results[k])
		}
		return results[k]
	}
	for _, img := range imgs {
		get(img, modeBaseline)
		get(img, modeLazy)
		if o := get(img, modeOptimized); img.OPT == "" {
			o.Note = img.OptNote
		}
		if p := get(img, modeLazyP5); lazy5 == nil {
			p.Note = p5Note
		}
	}
	// Runs are interleaved (run 1 of every mode, then run 2...), so that
	// load from others on the machine spreads over the modes.
	for i := range b.opt.runs {
		for _, img := range imgs {
			type job struct {
				mode string
				f    func() runResult
			}
			jobs := []job{
				{modeBaseline, func() runResult { return b.baselineRun(ctx, plain, img) }},
				{modeLazy, func() runResult { return b.lazyRun(ctx, lazy4, mnt4, img.ESGZ, img) }},
			}
			if img.OPT != "" {
				jobs = append(jobs, job{modeOptimized, func() runResult { return b.lazyRun(ctx, lazy4, mnt4, img.OPT, img) }})
			}
			if lazy5 != nil {
				jobs = append(jobs, job{modeLazyP5, func() runResult {
					// Others' e2e runs share the chroot and may unmount parts
					// of it when they end: mount what is missing (idempotent).
					if err := b.mountPodman5(ctx); err != nil {
						return runResult{Err: err.Error()}
					}
					return b.lazyRun(ctx, lazy5, b.p5Root+b.p5Dir+"/mnt", img.ESGZ, img)
				}})
			}
			for _, j := range jobs {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				r := j.f()
				m := get(img, j.mode)
				m.Runs = append(m.Runs, r)
				status := fmt.Sprintf("%.2f s, %s down, %d requests", r.Seconds, mib(r.Net.BytesDown), r.Net.Requests)
				if r.Err != "" {
					status = "FAILED: " + r.Err
				}
				say("run %d/%d %s: %s: %s", i+1, b.opt.runs, img.Name, j.mode, status)
			}
		}
	}
	for _, img := range imgs {
		base := get(img, modeBaseline)
		for _, m := range rep.Results {
			if m.Image != img.Name {
				continue
			}
			size := img.ESGZSize
			switch m.Mode {
			case modeBaseline:
				size = img.GZSize
			case modeOptimized:
				size = img.OPTSize
			}
			m.summarize(size, img.ReadBytes)
			if m.OK > 0 && base.OK > 0 && m != base {
				m.RatioToBaseline = m.Median / base.Median
			}
		}
	}

	if big != nil {
		say("warm re-read of a %d MiB file through the mount vs local disk", b.opt.bigMiB)
		w, err := b.warmTest(ctx, big)
		if err != nil {
			rep.Notes = append(rep.Notes, "warm re-read: "+err.Error())
		}
		rep.Warm = w
	}
	rep.Targets = targets(rep)
	return rep, nil
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

// baselineRun: fresh storage, drop caches, `podman pull` + `podman run` of
// the gzip image.
func (b *bench) baselineRun(ctx context.Context, pm *podman, img *image) runResult {
	var r runResult
	defer pm.reset()
	if err := pm.reset(); err != nil {
		r.Err = err.Error()
		return r
	}
	if err := dropCaches(); err != nil {
		r.Err = err.Error()
		return r
	}
	c0 := b.proxy.Counters()
	t0 := time.Now()
	if _, err := pm.exec(ctx, "pull", "-q", img.GZ); err != nil {
		r.Err = err.Error()
		return r
	}
	t1 := time.Now()
	if _, err := pm.exec(ctx, append([]string{"run", "--rm", img.GZ}, img.Workload...)...); err != nil {
		r.Err = err.Error()
		return r
	}
	r.Seconds, r.PullSeconds = secs(time.Since(t0)), secs(t1.Sub(t0))
	r.Net = b.proxy.Counters().Sub(c0)
	t2 := time.Now()
	if _, err := pm.exec(ctx, append([]string{"run", "--rm", img.GZ}, img.Workload...)...); err == nil {
		r.LocalRunSeconds = secs(time.Since(t2))
	}
	return r
}

// lazyRun: a store with a fresh root on mnt (host path), fresh Podman
// storage, drop caches, `podman run` of ref (which pulls through the store).
func (b *bench) lazyRun(ctx context.Context, pm *podman, mnt, ref string, img *image) runResult {
	var r runResult
	if err := pm.reset(); err != nil {
		r.Err = err.Error()
		return r
	}
	s, err := b.startStore(ctx, mnt)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer s.stop()
	defer pm.reset() // before the store stops: nothing of podman's may use it
	r.StoreLog = filepath.Base(s.log)
	if err := dropCaches(); err != nil {
		r.Err = err.Error()
		return r
	}
	c0 := b.proxy.Counters()
	t0 := time.Now()
	if _, err := pm.exec(ctx, append([]string{"run", "--rm", ref}, img.Workload...)...); err != nil {
		r.Err = err.Error()
		return r
	}
	r.Seconds = secs(time.Since(t0))
	r.Net = b.proxy.Counters().Sub(c0)
	st, err := parseStoreLog(s.log)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Store = &st
	if st.Uses == 0 || st.NotLazy > 0 {
		r.Err = fmt.Sprintf("not lazy: the store logged %d uses and %d layers not served lazily", st.Uses, st.NotLazy)
	}
	return r
}

func (m *modeResult) summarize(size, readBytes int64) {
	var t []float64
	var down, up, reqs []int64
	var ratio, chunkRatio, local []float64
	for _, r := range m.Runs {
		if r.Err != "" {
			continue
		}
		t = append(t, r.Seconds)
		down = append(down, r.Net.BytesDown)
		up = append(up, r.Net.BytesUp)
		reqs = append(reqs, r.Net.Requests)
		if r.LocalRunSeconds > 0 {
			local = append(local, r.LocalRunSeconds)
		}
		if r.Store != nil && r.Store.ChunkBytes > 0 {
			chunkRatio = append(chunkRatio, float64(r.Net.BytesDown)/float64(r.Store.ChunkBytes))
		}
		if r.Store != nil && readBytes > 0 {
			ratio = append(ratio, float64(r.Net.BytesDown)/float64(readBytes))
		}
	}
	m.OK = len(t)
	if m.OK == 0 {
		if m.Note == "" && len(m.Runs) > 0 {
			m.Note = "every run failed: " + m.Runs[0].Err
		}
		return
	}
	sort.Float64s(t)
	m.Median, m.Min, m.Max = medianF(t), t[0], t[len(t)-1]
	m.BytesDown, m.BytesUp, m.Requests = medianI(down), medianI(up), medianI(reqs)
	if size > 0 {
		m.FetchedOfImage = float64(m.BytesDown) / float64(size)
	}
	if len(local) > 0 {
		m.LocalRun = medianF(local)
	}
	if len(chunkRatio) > 0 {
		m.FetchedOverChunks = medianF(chunkRatio)
	}
	if len(ratio) > 0 {
		m.ReadBytes = readBytes
		m.FetchedOverRead = medianF(ratio)
	}
}

func medianF(s []float64) float64 {
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianI(s []int64) int64 {
	f := make([]float64, len(s))
	for i, v := range s {
		f[i] = float64(v)
	}
	return int64(medianF(f))
}

// warmResult compares reading a file through the store's mount, cold (from
// the registry) and warm (from the store's cache), with reading it from
// local disk; the page cache is dropped before each read. Warm and local
// are medians of max(3, runs) reads each.
type warmResult struct {
	Bytes        int64     `json:"bytes"`
	ColdMiBs     float64   `json:"cold_mib_s"`
	WarmMiBs     float64   `json:"warm_mib_s"`
	LocalMiBs    float64   `json:"local_mib_s"`
	WarmOverDisk float64   `json:"warm_over_local"`
	ColdFetched  int64     `json:"cold_bytes_down"`
	WarmFetched  int64     `json:"warm_bytes_down"` // over the warm reads
	WarmAll      []float64 `json:"warm_mib_s_each"`
	// Restarted is the first read after the store restarted on the same
	// cache: the new process verifies each cache file it serves once
	// (docs/design.md), so this read pays for hashing what it reads.
	// RestartedAgain is the read after it, the cache verified.
	RestartedMiBs      float64   `json:"restarted_first_mib_s"`
	RestartedAgainMiBs float64   `json:"restarted_second_mib_s"`
	RestartedFetched   int64     `json:"restarted_bytes_down"`
	LocalAll           []float64 `json:"local_mib_s_each"`
	StoreLog           string    `json:"store_log"`
}

func (b *bench) warmTest(ctx context.Context, img *image) (*warmResult, error) {
	layers, err := b.manifest(ctx, img.Name, "esgz")
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		return nil, fmt.Errorf("image %s has %d layers, want 1", img.Name, len(layers))
	}
	ref, err := refspec.Parse(img.ESGZ)
	if err != nil {
		return nil, fmt.Errorf("warm re-read: %w", err)
	}
	local := filepath.Join(b.work, "big.bin")
	if err := extractFile(img.rootfs, img.bigFile, local); err != nil {
		return nil, err
	}
	defer os.Remove(local)
	mnt := filepath.Join(b.work, "mnt-warm")
	s, err := b.startStore(ctx, mnt)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	path := filepath.Join(mnt, ref.PathElem(), layers[0].Digest, "diff", img.bigFile)
	w := &warmResult{StoreLog: filepath.Base(s.log)}
	read := func(p string) (float64, int64, error) {
		if err := dropCaches(); err != nil {
			return 0, 0, err
		}
		c0 := b.proxy.Counters()
		t0 := time.Now()
		n, err := readAll(ctx, p)
		el := time.Since(t0)
		if err != nil {
			return 0, 0, err
		}
		w.Bytes = n
		return float64(n) / (1 << 20) / el.Seconds(), b.proxy.Counters().Sub(c0).BytesDown, nil
	}
	if w.ColdMiBs, w.ColdFetched, err = read(path); err != nil {
		return nil, fmt.Errorf("cold read through the mount: %w", err)
	}
	// Warm and local reads alternate, max(3, runs) of each; medians. The
	// local reads vary several-fold from one to the next (see
	// docs/bench.md), so more pairs steady the ratio.
	var warm, disk []float64
	for range max(3, b.opt.runs) {
		v, fetched, err := read(path)
		if err != nil {
			return nil, fmt.Errorf("warm read through the mount: %w", err)
		}
		warm, w.WarmFetched = append(warm, v), w.WarmFetched+fetched
		if v, _, err = read(local); err != nil {
			return nil, fmt.Errorf("local read: %w", err)
		}
		disk = append(disk, v)
	}
	w.WarmMiBs, w.LocalMiBs = medianF(warm), medianF(disk)
	w.WarmAll, w.LocalAll = warm, disk
	w.WarmOverDisk = w.WarmMiBs / w.LocalMiBs
	if err := b.restartStore(ctx, s); err != nil {
		return nil, fmt.Errorf("restart the store: %w", err)
	}
	if w.RestartedMiBs, w.RestartedFetched, err = read(path); err != nil {
		return nil, fmt.Errorf("first read after a restart: %w", err)
	}
	if w.RestartedAgainMiBs, _, err = read(path); err != nil {
		return nil, fmt.Errorf("second read after a restart: %w", err)
	}
	return w, nil
}

func readAll(ctx context.Context, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func targets(rep *report) []target {
	var ts []target
	find := func(img, mode string) *modeResult {
		for _, m := range rep.Results {
			if m.Image == img && m.Mode == mode && m.OK > 0 {
				return m
			}
		}
		return nil
	}
	add := func(name, goal string, v float64, known bool, met func(float64) bool) {
		ts = append(ts, target{Name: name, Goal: goal, Ours: v, Known: known, Met: known && met(v)})
	}
	lz := find("python", modeLazy)
	var v float64
	if lz != nil {
		v = lz.RatioToBaseline
	}
	add("python: cold lazy run / plain pull+run, unoptimized (podman 4)", "<= 0.25", v, lz != nil && v > 0, func(x float64) bool { return x <= 0.25 })
	// The same target for the image optimized for its workload
	// (`stargz-store optimize`), the store's answer for a fast start.
	opt := find("python", modeOptimized)
	v = 0
	if opt != nil {
		v = opt.RatioToBaseline
	}
	add("python: cold lazy run / plain pull+run, optimized (podman 4)", "<= 0.25", v, opt != nil && v > 0, func(x float64) bool { return x <= 0.25 })
	if lz != nil {
		v = lz.FetchedOfImage
	}
	add("python: bytes fetched at start-up / compressed image size", "<= 0.10", v, lz != nil, func(x float64) bool { return x <= 0.10 })
	if lz != nil {
		v = lz.FetchedOverRead
	}
	add("python: fetched / read, unoptimized", "<= 1.3", v, lz != nil && v > 0, func(x float64) bool { return x <= 1.3 })
	if rep.Warm != nil {
		v = rep.Warm.WarmOverDisk
	}
	add("warm re-read through the mount / local disk (speed)", ">= 0.8", v, rep.Warm != nil, func(x float64) bool { return x >= 0.8 })
	return ts
}
