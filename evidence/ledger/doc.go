// Package ledger is Vigil's evidence ledger: every body-worn-camera clip the
// gateway accepts becomes one immutable entry, and the entries are bound
// together twice, so that police and information-governance (IG) officers
// can prove what happened to the footage without trusting the gateway's
// administrators:
//
//   - per camera, entries form a hash chain (each names the hash of the
//     camera's previous entry), which proves order and completeness: a
//     missing, reordered or altered clip breaks the chain;
//   - all entries, in ledger index order, are the leaves of one RFC 6962
//     Merkle tree whose root is signed at intervals as a checkpoint, which
//     proves that one clip is in the log by disclosing only the digests of
//     other entries (an inclusion proof), never their metadata, and that a
//     later log extends an earlier one (a consistency proof).
//
// [Ledger.Verify] re-derives everything from the stored entry bodies and
// names each edit, deletion, insertion or reordering it finds. The offline
// functions [ParseCheckpoint], [VerifyInclusion], [LeafHash] and [ParseBody]
// need only files, so a standalone verifier can repeat the checks.
//
// # Entry body (canonical bytes)
//
// An entry's body is the compact JSON object below, with exactly these keys
// in exactly this order, no whitespace between tokens and no trailing
// newline:
//
//	{"camera":"cam-1","clip":"c1","wearer":"w-17","site":"site-a",
//	 "start":"2025-03-01T09:00:00.000Z","end":"2025-03-01T09:05:00.000Z",
//	 "size":1048576,"sha256":"<64 lowercase hex>",
//	 "received":"2025-03-01T09:06:12.345Z","ingest":"tus","prev":""}
//
// (shown wrapped; the real body is one line). The rules that make it
// reproducible by an independent party:
//
//   - camera: 1–64 of A–Z a–z 0–9 _ -, starting with a letter or digit
//     (a device id);
//   - clip: 1–128 of A–Z a–z 0–9 . _ -, starting with a letter or digit,
//     without "..", unique per camera;
//   - wearer, site: at most 256 bytes of UTF-8 text without control
//     characters (U+0000–U+001F, U+007F–U+009F) or U+2028/U+2029; may be
//     empty;
//   - start, end, received: UTC times formatted as
//     YYYY-MM-DDTHH:MM:SS.mmmZ (always three fraction digits, always "Z"),
//     i.e. Go's "2006-01-02T15:04:05.000Z07:00" applied to a UTC time
//     truncated to the millisecond; years 1970–9999; end is not before start;
//   - size: the clip's length in bytes as a JSON integer (> 0), no sign,
//     no leading zeros, no exponent;
//   - sha256: the SHA-256 of the clip's bytes, 64 lowercase hex digits;
//   - ingest: "tus" (uploaded over tus) or "dock" (copied from a dock);
//   - prev: the hash (below) of the previous entry, by ledger index, of the
//     same camera, 64 lowercase hex digits, or "" for the camera's first
//     entry;
//   - clock_unsynchronised: optional, after prev, and only ever true:
//     ,"clock_unsynchronised":true before the closing brace means the
//     gateway's clock was not synchronised to a time source when it took
//     the received time, which may therefore be wrong. Absent otherwise,
//     so entries written before the key existed are unchanged.
//
// Strings are written between double quotes exactly as their UTF-8 bytes,
// except that '"' is written as \" and '\' as \\ (the rules above exclude
// every other character JSON would escape; HTML characters such as < > &
// are not escaped).
//
// # Entry hash, chain and tree
//
// The entry hash is the RFC 6962 leaf hash of the body,
// SHA-256(0x00 || body), written as 64 lowercase hex digits where it appears
// in a body or in the database. Entries are numbered from 0 in the order
// they were appended (the ledger index); leaf i of the Merkle tree is entry
// i's hash, and interior nodes are SHA-256(0x01 || left || right) as in
// RFC 6962 section 2.1 (RFC 9162 section 2.1.1). The tree of size n covers
// entries 0..n-1.
//
// # Checkpoints
//
// A checkpoint is a C2SP signed note (golang.org/x/mod/sumdb/note) whose
// text is a C2SP tlog-checkpoint body plus one extension line carrying the
// signing time:
//
//	<origin>\n
//	<tree size, decimal, no leading zeros>\n
//	<base64 (standard, padded) of the 32-byte root hash>\n
//	time <UTC time, YYYY-MM-DDTHH:MM:SS.mmmZ>\n
//
// followed by a blank line and the Ed25519 signature line
// "— <key name> <base64(4-byte key hash || signature)>\n". [ParseCheckpoint]
// accepts any further extension lines (and none), and reads the time from
// the first line starting with "time " if there is one.
//
// # Keys
//
// The gateway's signing key is a note signer key ("PRIVATE+KEY+<name>+
// <hash>+<base64 key>") in a 0600 file made on first run by
// [LoadOrCreateKey]. [VerifierKey] gives the public verifier key
// ("<name>+<hash>+<base64 key>") that police and IG officers pin.
//
// # Storage
//
// Entries live in the SQLite table ledger_entries (one row per entry; the
// body is the truth and the other columns are copies kept for queries) and
// checkpoints in ledger_checkpoints (the signed note is the truth; the row
// also keeps the compact Merkle range at that size so the next checkpoint
// costs only the entries appended since). ledger_subtrees caches the root of
// every complete 256-entry subtree below the newest checkpoint, so proofs
// cost O(log n) small queries instead of a pass over every entry; it is
// derived data, never trusted: Verify recomputes it.
package ledger
