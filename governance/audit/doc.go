// Package audit is Vigil's audit trail of who accessed which body-worn-camera
// footage, when, from where and why. It must stand up in front of a
// regulator or a court, so it is built to show tampering even by someone
// who can write to the gateway's SQLite database:
//
//   - every record is hash-chained to the one before it, so an edit, a
//     deletion, an insertion or a reordering breaks the chain;
//   - at intervals the gateway seals the records appended since the last
//     seal: a signed note (golang.org/x/mod/sumdb/note, the gateway's
//     Ed25519 key) listing every record's hash and content hash, stored in
//     the object store under COMPLIANCE retention, where nobody, the
//     gateway's administrators included, can change or delete it;
//   - [Log.Verify] walks the local chain and aligns it against the stored
//     seals, so it names what changed ("record 7 edited", "record 12
//     deleted", "records 3 and 4 reordered") even when the attacker
//     recomputed every hash and renumbered the rows afterwards.
//
// Records appended after the last seal are protected by the chain alone:
// someone with write access can remove them from the end, or append
// records whose hashes they computed, without a trace. That is why the
// gateway seals every [Config.SealEvery] records, at most
// [Config.SealInterval] after the oldest unsealed record, and on shutdown;
// [Report.Unsealed] says how many records that window currently holds.
//
// # Record hash (canonical encoding)
//
// An independent party recomputes a record's hashes from its fields alone.
// Each field is encoded as a netstring: its length in bytes in decimal (no
// sign, no leading zeros), ':', the bytes themselves, ','. For example the
// string "clip.view" is encoded as "9:clip.view," and the empty string as
// "0:,". Strings are taken byte for byte as stored (UTF-8), with no
// normalisation.
//
// The content hash covers everything a person wrote or the gateway
// observed, but not the record's position in the log:
//
//	content = SHA-256( ns("vigil-audit-content-v1") || ns(at) || ns(actor) ||
//	          ns(role) || ns(action) || ns(camera) || ns(clip) ||
//	          ns(incident) || ns(release) || ns(why) || ns(from) ||
//	          ns(outcome) || ns(detail) )
//
// where at is the record's time in UTC formatted as
// YYYY-MM-DDTHH:MM:SS.mmmZ (always three fraction digits and "Z", Go's
// "2006-01-02T15:04:05.000Z"). The record hash binds the content to its
// place in the chain:
//
//	hash = SHA-256( ns("vigil-audit-record-v1") || ns(seq) || ns(prev) ||
//	       ns(content) )
//
// with seq in decimal, prev the previous record's hash ("" for record 1),
// and content as 64 lowercase hex digits. Hashes are written everywhere as
// 64 lowercase hex digits. [ContentHash], [RecordHash] and
// [Record.ComputeHash] implement these rules.
//
// Keeping the content hash separate is what lets Verify recognise a record
// that an attacker moved or renumbered: its content hash does not depend on
// where it sits.
//
// # Seals
//
// A seal is a signed note whose text is, line by line:
//
//	<origin>
//	count <records sealed so far, this seal included>
//	head <hash of the last record in this seal>
//	time <seal time, YYYY-MM-DDTHH:MM:SS.mmmZ>
//	range <first seq> <last seq>
//	prev <head of the previous seal, or "-" for the first seal>
//	<seq> <record hash> <content hash>
//	...
//
// with one "<seq> <hash> <content>" line per record in the range, in seq
// order, followed by the note's blank line and the signature line
// "— <key name> <base64 signature>". Numbers are decimal without leading
// zeros. Seals cover consecutive ranges: each range starts right after the
// previous seal's last seq and its prev line repeats that seal's head, so
// the seals form a chain of their own. A record hash is written as "-" if
// the database held something other than a hash there when it was sealed;
// the gateway seals what it finds, so tampering done before a seal stays
// visible in it (Verify reports such a seal as made over a broken chain).
//
// The gateway stores each seal in the object store under the key
// audit/seals/<last seq as 20 decimal digits>, so keys sort in log order,
// with COMPLIANCE retention until the seal time plus [Config.Retention],
// as text/plain. [ParseSeal] checks and parses one, so a standalone tool can
// repeat the verification with only the stored seals, an export of the
// records and the gateway's public key.
//
// # Storage
//
// Records live in the SQLite table audit_records (one row per record; seq
// is the primary key) and seals in audit_seals (the signed note is the
// truth; the other columns are copies for lookups, plus when the store
// accepted it). Both may be edited by an attacker; the stored seals are the
// authoritative copy and Verify says when the local ones disagree.
package audit
