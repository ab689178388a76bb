package schemas

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// FileLimits are a tier's limits on guest files. A zero field takes the tier's default
// (DefaultFileLimits), or the free tier's for a tier not in the defaults.
type FileLimits struct {
	ScratchBytes     int64 `json:"scratch_bytes,omitempty"`      // writable file space of one execution (data and inodes; billed as memory)
	InlineFilesBytes int64 `json:"inline_files_bytes,omitempty"` // inline input files of one request
	OutputsBytes     int64 `json:"outputs_bytes,omitempty"`      // output files returned by one execution
	BundleBytes      int64 `json:"bundle_bytes,omitempty"`       // file data of one bundle
	BundleFiles      int   `json:"bundle_files,omitempty"`       // files, directories and links of one bundle
}

// DefaultFileLimits are the file limits of the default tiers. Output files travel inline in
// the result, which must fit one NATS message with stdout and stderr (8 MiB in the shipped
// configurations), hence the outputs caps.
var DefaultFileLimits = map[string]FileLimits{
	TierFree:      {ScratchBytes: 32 * MiB, InlineFilesBytes: MiB, OutputsBytes: MiB, BundleBytes: 16 * MiB, BundleFiles: 1_000},
	TierBasic:     {ScratchBytes: 64 * MiB, InlineFilesBytes: 2 * MiB, OutputsBytes: 2 * MiB, BundleBytes: 64 * MiB, BundleFiles: 10_000},
	TierPro:       {ScratchBytes: 128 * MiB, InlineFilesBytes: 4 * MiB, OutputsBytes: 4 * MiB, BundleBytes: 256 * MiB, BundleFiles: 100_000},
	TierUnlimited: {ScratchBytes: 256 * MiB, InlineFilesBytes: 4 * MiB, OutputsBytes: 64 * MiB, BundleBytes: 256 * MiB, BundleFiles: 100_000},
}

// FileLimits returns t's file limits with the defaults filled in.
func (t Tier) FileLimits() FileLimits {
	d, ok := DefaultFileLimits[t.Name]
	if !ok {
		d = DefaultFileLimits[TierFree]
	}
	return d.over(&t.Files)
}

// over returns l with the non-zero fields of o laid over it.
func (l FileLimits) over(o *FileLimits) FileLimits {
	if o == nil {
		return l
	}
	if o.ScratchBytes != 0 {
		l.ScratchBytes = o.ScratchBytes
	}
	if o.InlineFilesBytes != 0 {
		l.InlineFilesBytes = o.InlineFilesBytes
	}
	if o.OutputsBytes != 0 {
		l.OutputsBytes = o.OutputsBytes
	}
	if o.BundleBytes != 0 {
		l.BundleBytes = o.BundleBytes
	}
	if o.BundleFiles != 0 {
		l.BundleFiles = o.BundleFiles
	}
	return l
}

// Limits on the file fields of one execution request, whatever the tier.
const (
	MaxInlineFiles = 1000 // inline files
	MaxMounts      = 16   // mounted bundles
	MaxOutputs     = 64   // output patterns
	MaxGuestPath   = 1024 // bytes of a guest path
)

// CleanGuestPath checks a path in a guest's file system as a request names it: absolute,
// clean (no "." or ".." components, no doubled or trailing slash), UTF-8 without NUL, at most
// MaxGuestPath bytes. glob allows path.Match wildcards (outputs). It returns a message for
// the caller, or "".
func CleanGuestPath(p string, glob bool) string {
	switch {
	case p == "":
		return "a path is empty"
	case len(p) > MaxGuestPath:
		return fmt.Sprintf("a path is longer than %d bytes", MaxGuestPath)
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is not an absolute path", trunc(p))
	case strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p):
		return "paths must be UTF-8 without NUL"
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not a clean path (no \".\", \"..\", doubled or trailing slashes)", trunc(p))
	case !glob && strings.ContainsAny(p, `*?[\`):
		return fmt.Sprintf("%q: wildcards are allowed in outputs only", trunc(p))
	}
	if glob {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Sprintf("%q is not a valid pattern", trunc(p))
		}
	}
	return ""
}

func trunc(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// MountSpec is a bundle mounted into an execution, as the executor receives it.
type MountSpec struct {
	BundleID string `json:"bundle_id"`          // sha256:<hex>
	Path     string `json:"path"`               // absolute
	Writable bool   `json:"writable,omitempty"` // a copy in scratch, not the shared read-only tree
	Preopen  string `json:"preopen,omitempty"`  // also preopened under this name
}

// OutputFile is a file returned by an execution, as stored in its result.
type OutputFile struct {
	Path      string `json:"path"`
	Data      []byte `json:"data,omitempty"`
	Size      int64  `json:"size"`                // the file's whole size
	Truncated bool   `json:"truncated,omitempty"` // Data holds fewer than Size bytes
	// Stored: the file (its first Size bytes, or what the outputs cap kept when Truncated) is
	// the object OutputFileObjectName(execution, Index) in ObjectOutputs, not Data.
	Stored bool  `json:"stored,omitempty"`
	Index  int   `json:"index,omitempty"` // its place among the execution's stored files
	Kept   int64 `json:"kept,omitempty"`  // bytes stored
}

// OutputFileObjectName is the name in ObjectOutputs of an execution's stored output file:
// <execution id>/files/<index>.
func OutputFileObjectName(executionID string, index int) string {
	return executionID + "/files/" + strconv.Itoa(index)
}

// Bundle is a tenant's reference to a stored bundle, in KV BucketBundleOwner.
type Bundle struct {
	ID        string    `json:"id" doc:"sha256 of the (decompressed) tar archive" example:"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"`
	Name      string    `json:"name,omitempty"`
	Files     int       `json:"files" doc:"regular files in the bundle"`
	Entries   int       `json:"entries" doc:"files, directories and links"`
	Size      int64     `json:"size" doc:"bytes of file data"`
	Stored    int64     `json:"stored" doc:"bytes of the stored archive"`
	CreatedAt time.Time `json:"created_at"`
	TenantID  string    `json:"tenant_id"`
}

// BundleList is the body of GET /v1/bundles.
type BundleList struct {
	Bundles []Bundle `json:"bundles"`
}

// Where bundles live (beside the names in subjects.go).
const (
	BucketBundleOwner = "wasmwiz_bundle_refs" // KV: <tenant>.<hex> -> Bundle (ownership metadata)
	ObjectBundles     = "wasmwiz_bundles"     // object store: sha256-<hex> -> tar archive
)

// ObjectOutputs holds what a result cannot carry in one NATS message: stdout and stderr over
// InlineOutputMax, named by OutputObjectName, kept as long as results (the results TTL).
const ObjectOutputs = "wasmwiz_outputs"

// InlineOutputMax is the most of a stdout or stderr a result carries itself, and the largest
// output file it carries (larger ones are stored like stdout, see OutputFile.Stored). More (up to the
// tier's stdout_max) is stored in ObjectOutputs; the result then carries its first
// InlineOutputMax bytes and says so (Result.StdoutStored, Execution.StdoutURL).
const InlineOutputMax = MiB

// Output streams stored in ObjectOutputs.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// OutputObjectName is the name in ObjectOutputs of an execution's stdout or stderr:
// <execution id>/<stream>.
func OutputObjectName(executionID, stream string) string { return executionID + "/" + stream }

// BundleObjectName is a bundle's name in ObjectBundles.
func BundleObjectName(hexDigest string) string { return "sha256-" + hexDigest }

// MaxArchiveBytes is the largest (decompressed) bundle archive the limits allow: the file data
// plus room for each entry's headers (a 512-byte header, PAX records for long names, padding).
func (l FileLimits) MaxArchiveBytes() int64 {
	return l.BundleBytes + int64(l.BundleFiles+2)*2048 + 10240
}

// The bundle operations of the direct NATS API (APISubject).
const (
	OpBundlesUpload = "bundles.upload" // body: the archive; name in the Wasmwiz-Bundle-Name header
	OpBundlesList   = "bundles.list"
	OpBundlesGet    = "bundles.get"
	OpBundlesDelete = "bundles.delete"
)
