// SPDX-License-Identifier: Apache-2.0

// Package layerfs serves layers of the store over FUSE as a
// containers/storage Additional Layer Store (ALS), so that Podman 4 and
// Podman 5 can run eStargz images lazily. It is the only package that
// speaks FUSE: it translates kernel requests into calls on a [Source] (the
// store) and errors into errnos, and nothing else.
//
// # The tree
//
//	<mnt>/                                  root: names are base64(ref)
//	<mnt>/<base64(ref)>/                    names are layer digests; RMDIR releases
//	<mnt>/<base64(ref)>/<digest>/           CREATE("use") takes a reference
//	<mnt>/<base64(ref)>/<digest>/diff/      the unpacked layer: an overlayfs lower dir
//	<mnt>/<base64(ref)>/<digest>/info       JSON for storage's layer record
//	<mnt>/<base64(ref)>/<digest>/blob       the compressed blob, byte for byte
//
// The reference element is standard base64 with padding of the fully
// qualified reference (refspec.FromPathElem); the digest is a blob digest
// when Podman 4 asks (Gen A) and a TOC digest when Podman 5 asks (Gen B).
// The root, reference and layer directories list nothing: their names
// exist only when looked up, and decoding a name never touches the
// network. The first lookup of diff, info or blob resolves the layer
// (Source.Layer), bounded by Options.ResolveTimeout.
//
// # The contract's quirks
//
// Storage notifies the store through operations that must fail:
//
//   - Use: storage creates <layer>/use. LOOKUP("use") answers ENOENT, so
//     the kernel sends CREATE, which calls Source.Use and answers ENOENT.
//     A successful create would tell storage that the store has no GC.
//   - Release: storage removes the layer directory. RMDIR on the
//     reference directory calls Source.Release and answers ENOENT.
//   - Existence: Podman 5 checks diff, info and blob with faccessat(F_OK),
//     which arrives as FUSE_ACCESS with mask 0; outside diff trees ACCESS
//     always succeeds.
//   - Storage probes <layer>/diff1, diff2, ... whenever it mounts on top of
//     a layer; they are ENOENT.
//
// For this to work the mount has no default_permissions (the kernel would
// refuse CREATE and RMDIR for callers other than root) and is not
// MS_RDONLY (the kernel would answer EROFS itself). Every operation that
// would change the tree answers EROFS instead. The mount has suid and dev:
// a lazily pulled image must behave like a pulled one, setuid binaries
// and device nodes included.
//
// # Who may call
//
// Only root and the user the server runs as (a rootless store): a layer
// of a private image, a 0600 file or a setuid binary of an image must not
// be reachable by other local users. Three things see to it:
//
//   - The mount has no allow_other, so the kernel refuses every process
//     whose real, effective and saved uids and gids are not the server's
//     before it sends a request, even for entries and attributes it has
//     cached. overlayfs does not need allow_other: it looks up, opens,
//     stats, lists and reads the xattrs of its lower layers with the
//     credentials of whoever mounted the overlay (root for rootful Podman,
//     the user's namespace root for rootless Podman), whatever user the
//     container process runs as.
//   - callerGate (caller.go) refuses those same requests with EACCES
//     when they come from anyone else, in case the mount is ever made
//     reachable by allow_other.
//   - The daemon refuses to mount where the mount point's parent directory
//     lets other users in (cmd/stargz-store), so they cannot even reach
//     the mount root.
//
// READ is not checked: a page fault on a mapped file (ld.so mapping a
// library, exec) is sent with the credentials of the faulting task, a
// container process running as uid 65534, or as 100000+ under
// --userns=auto. Opening the file is the check; reads, flushes, seeks and
// releases of an open file are never refused. Refusals are EACCES, the
// errno for "you may not", which no store error ever maps to.
//
// # Diff trees
//
// A diff tree is the layer's index (store/index) shown as overlayfs
// expects a lower directory: a tar whiteout ".wh.NAME" is NAME, a
// character device 0/0 (hidden if a real NAME exists); a directory
// holding ".wh..wh..opq" answers trusted.overlay.opaque and
// user.overlay.opaque with "y" (root and rootless overlayfs); every other
// ".wh." name and the eStargz landmarks at the root are hidden. Hard links
// share an inode number and report their link count. Lookup and Readdir
// present the same names, sorted. See inode.go for the numbering.
//
// # Errors
//
// errnoFor in errno.go is the one mapping from errors to errnos. At the
// ALS lookups store.ErrNotFound, store.ErrNotLazy, malformed names and a
// registry refusing our credentials (registryauth.ErrUnauthorized) become
// ENOENT, which makes storage pull the layer normally (and report a
// refusal itself); a failed read of a file is EIO whatever the cause.
// EINTR is only for a request the kernel interrupted: a cancellation from
// the store (a layer closed after its release, a deadline) is EIO. EACCES
// is left for callers the mount refuses (see Who may call). Handlers log
// at Debug: why a layer cannot be served is the store's to say, once per
// burst of lookups (store.Manager.Layer). The exception is a failed read,
// an I/O error in a running container whose cause the store does not
// always log: the first of a layer in a minute is a Warn (readfail.go).
//
// # Kernel caching
//
// Content is addressed by digest and never changes, so inside diff trees
// the kernel caches entries, attributes and negative entries for
// Options.DiffTimeout, files are opened with FOPEN_KEEP_CACHE, and
// symlink targets are cached. Outside them entries and attributes live
// for Options.EntryTimeout, and negative entries are never cached: a
// reference can appear after a failed lookup, and `use` must stay
// negative. Because the store may free a layer and resolve it again as a
// new *store.Layer, every lookup of diff, info and blob asks the Source,
// and a child built from a different layer is replaced: the new diff
// tree's inode numbers carry the new layer's ID, so go-fuse never hands
// back a node of a closed layer. Nodes hold no mutable per-layer state
// (a regular file's node only counts its open handles, below); NewInode
// may return an existing node for a known inode number.
//
// # Passthrough
//
// A regular file of 1 MiB or more whose whole content is one cache file
// (store.Layer.CachedFile: a single chunk, or the whole-file entry the
// store assembles from a big file's chunks) is opened on that file with
// FOPEN_PASSTHROUGH, unless Options.NoPassthrough: the kernel then reads
// the cache file itself and no READ reaches the server. It needs Linux
// >= 6.9 and CAP_SYS_ADMIN; without them go-fuse stops asking and the
// server reads the same cache file. The kernel refuses (EIO) to open an
// inode in passthrough mode while it is open in the other mode and the
// other way round, so a file's node keeps the mode of its first open
// until its last handle is released (passthrough.go).
//
// # Deadlocks
//
// As with any FUSE server (see the go-fuse fs package documentation):
//
//   - The serving process must not access its own mount outside of
//     tests that know what they do: a request it makes waits for a
//     server goroutine that may be waiting for it. In particular, do not
//     exec or fork from a goroutine holding locks the server needs, and
//     never exec a program that lives on the mount: the forking thread
//     keeps its P until the program, read through the mount, starts, and
//     a garbage collection begun by a server goroutine waits for that P.
//   - Never hold a lock while calling NotifyEntry, NotifyDelete or
//     NotifyContent; this package calls none of them.
//   - Source.Layer may block on the network while the kernel holds the
//     parent directory's lock; other lookups in that directory wait. The
//     kernel interrupts a request when the caller is killed, which
//     cancels the request's context.
//   - Unmount fails while the mount is busy, for example while an
//     overlay mount uses one of its diff trees.
package layerfs
