//! The strict protobuf wire checker: reads proto2 and proto3 messages field by field, with byte
//! offsets.
//!
//! It owns the wire grammar (varints, tags, length-delimited fields) and the rules of both
//! encodings the goraft family writes ([`Syntax`]): gogo proto2 (goraft, raftd, etcd 0.4: every
//! `required` field written, even when zero) and proto3 (the seaweedfs/raft fork: a field that
//! holds zero or empty is not written, and an absent field reads as zero or empty). It reports
//! what Go accepts silently (unknown, duplicate and out-of-order fields, a zero written under
//! proto3) as [`WireQuirk`]s. `prost` decodes the same bytes into structs (see `format::proto`)
//! but would accept every one of these defects without a word. Pure functions over `&[u8]`; no
//! I/O.

use std::fmt;

/// A protobuf wire-level defect that makes Go's `proto.Unmarshal` fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The body is empty: no field at all.
    Empty,
    /// A varint runs past the end or over 10 bytes.
    BadVarint {
        /// Offset of the varint within the message.
        offset: usize,
    },
    /// A tag with field number 0 or a wire type that does not exist (6, 7) or groups (3, 4).
    BadTag {
        /// Offset of the tag.
        offset: usize,
        /// The raw tag value.
        tag: u64,
    },
    /// A length-delimited or fixed field runs past the end of the message.
    Truncated {
        /// Offset of the field's tag.
        offset: usize,
        /// Field number.
        field: u32,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that remain.
        available: u64,
    },
    /// A known field arrived with another wire type than its declaration.
    WrongWireType {
        /// Offset of the tag.
        offset: usize,
        /// The field's name.
        field: &'static str,
        /// The wire type found.
        found: u8,
    },
    /// A `required` field is missing.
    MissingRequired {
        /// Message name.
        message: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A proto3 `string` field that is not valid UTF-8 (google.golang.org/protobuf rejects it;
    /// gogo proto2 accepts it, see [`WireQuirk::InvalidUtf8`]).
    InvalidUtf8 {
        /// Offset of the field's tag.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
    /// An embedded message is itself invalid.
    Nested {
        /// Offset of the embedded message's bytes.
        offset: usize,
        /// Which field.
        field: &'static str,
        /// What is wrong inside it (offsets relative to the embedded message).
        error: Box<WireError>,
    },
}

impl WireError {
    /// The offset, relative to the message start, where the defect is, when there is one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            WireError::Empty | WireError::MissingRequired { .. } => None,
            WireError::BadVarint { offset }
            | WireError::BadTag { offset, .. }
            | WireError::Truncated { offset, .. }
            | WireError::WrongWireType { offset, .. }
            | WireError::InvalidUtf8 { offset, .. } => Some(*offset),
            WireError::Nested { offset, error, .. } => Some(offset + error.offset().unwrap_or(0)),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Empty => write!(f, "empty protobuf body (expected the required Index field)"),
            WireError::BadVarint { offset } => {
                write!(f, "malformed varint at body offset {offset}")
            }
            WireError::BadTag { offset, tag } => write!(
                f,
                "invalid protobuf tag {tag:#x} at body offset {offset} (field {} wire type {})",
                tag >> 3,
                tag & 7
            ),
            WireError::Truncated {
                offset,
                field,
                needed,
                available,
            } => write!(
                f,
                "field {field} at body offset {offset} needs {needed} bytes but only {available} remain"
            ),
            WireError::WrongWireType {
                offset,
                field,
                found,
            } => write!(f, "field {field} at body offset {offset} has wrong wire type {found}"),
            WireError::MissingRequired { message, field } => {
                write!(f, "required field {message}.{field} is missing")
            }
            WireError::InvalidUtf8 { offset, field } => write!(
                f,
                "string field {field} at body offset {offset} is not valid UTF-8 (proto3 rejects it)"
            ),
            WireError::Nested {
                offset,
                field,
                error,
            } => write!(f, "in {field} at body offset {offset}: {error}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Something Go's decoder accepts but goraft never writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireQuirk {
    /// A field number the message does not declare (kept and re-sent by Go).
    UnknownField {
        /// Offset of its tag.
        offset: usize,
        /// Its number.
        field: u32,
    },
    /// A non-repeated field that appears twice (Go keeps the last).
    DuplicateField {
        /// Offset of the second occurrence.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
    /// Fields not in ascending order.
    OutOfOrder {
        /// Offset of the first field that is out of order.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
    /// A string field that is not valid UTF-8.
    InvalidUtf8 {
        /// Offset of the field's tag.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
    /// Under proto3, a field written although it holds zero or empty: it reads the same as an
    /// absent field, but a proto3 writer leaves it out.
    ZeroWritten {
        /// Offset of its tag.
        offset: usize,
        /// Field name.
        field: &'static str,
    },
}

impl WireQuirk {
    /// Offset of the quirk relative to the message start.
    pub fn offset(&self) -> usize {
        match self {
            WireQuirk::UnknownField { offset, .. }
            | WireQuirk::DuplicateField { offset, .. }
            | WireQuirk::OutOfOrder { offset, .. }
            | WireQuirk::InvalidUtf8 { offset, .. }
            | WireQuirk::ZeroWritten { offset, .. } => *offset,
        }
    }
}

impl fmt::Display for WireQuirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireQuirk::UnknownField { offset, field } => {
                write!(f, "unknown field {field} at body offset {offset}")
            }
            WireQuirk::DuplicateField { offset, field } => {
                write!(
                    f,
                    "duplicate field {field} at body offset {offset} (Go keeps the last)"
                )
            }
            WireQuirk::OutOfOrder { offset, field } => {
                write!(f, "field {field} out of order at body offset {offset}")
            }
            WireQuirk::InvalidUtf8 { offset, field } => {
                write!(
                    f,
                    "field {field} at body offset {offset} is not valid UTF-8"
                )
            }
            WireQuirk::ZeroWritten { offset, field } => write!(
                f,
                "field {field} at body offset {offset} holds zero or empty and is written (a proto3 writer leaves it out)"
            ),
        }
    }
}

/// One field's value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl WireValue<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// One field read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Field number.
    pub number: u32,
    /// Its value.
    pub value: WireValue<'a>,
    /// Offset of its tag within the message.
    pub offset: usize,
}

/// Reads a base-128 varint at `*pos`, advancing it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    varint(buf, pos).ok_or(WireError::BadVarint { offset: start })
}

/// [`read_varint`] without the error value (`*pos` is left alone on `None`): the hot paths'
/// form, whose small return value stays in registers.
#[inline(always)]
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let start = *pos;
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(start + i)?;
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos = start + i + 1;
            return Some(v);
        }
    }
    None
}

/// Appends `v` as a varint.
pub fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Iterates over the fields of one message; stops at the first wire error.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// Reads the fields of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = read_field(self.buf, &mut self.pos);
        self.failed = r.is_err();
        Some(r)
    }
}

/// Reads the field whose tag is at `*pos`, advancing past it ([`Fields`] one step, for callers
/// that write into the buffer between fields).
pub fn read_field<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Field<'a>, WireError> {
    let offset = *pos;
    let tag = read_varint(buf, pos)?;
    let number = tag >> 3;
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Err(WireError::BadTag { offset, tag });
    }
    let number = number as u32;
    let remaining = |p: usize| (buf.len() - p) as u64;
    let value = match tag & 7 {
        0 => WireValue::Varint(read_varint(buf, pos)?),
        1 => {
            let b: [u8; 8] = buf
                .get(*pos..*pos + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or(WireError::Truncated {
                    offset,
                    field: number,
                    needed: 8,
                    available: remaining(*pos),
                })?;
            *pos += 8;
            WireValue::Fixed64(u64::from_le_bytes(b))
        }
        2 => {
            let len = read_varint(buf, pos)?;
            if len > remaining(*pos) {
                return Err(WireError::Truncated {
                    offset,
                    field: number,
                    needed: len,
                    available: remaining(*pos),
                });
            }
            let s = &buf[*pos..*pos + len as usize];
            *pos += len as usize;
            WireValue::Bytes(s)
        }
        5 => {
            let b: [u8; 4] = buf
                .get(*pos..*pos + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or(WireError::Truncated {
                    offset,
                    field: number,
                    needed: 4,
                    available: remaining(*pos),
                })?;
            *pos += 4;
            WireValue::Fixed32(u32::from_le_bytes(b))
        }
        _ => return Err(WireError::BadTag { offset, tag }),
    };
    Ok(Field {
        number,
        value,
        offset,
    })
}

/// How a field is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// uint64 / bool: wire type 0.
    Varint,
    /// string: wire type 2, UTF-8 expected.
    String,
    /// bytes: wire type 2.
    Bytes,
    /// An embedded message.
    Message(&'static MessageSpec),
}

/// proto2 label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// Must be present.
    Required,
    /// May be absent.
    Optional,
    /// Any number of times.
    Repeated,
}

/// One declared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field number.
    pub number: u32,
    /// Name as in goraft's `.proto`.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Label.
    pub label: Label,
}

/// Which protobuf rules a message is read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Syntax {
    /// gogo proto2 as goraft generates it: a `required` field must be present; strings are not
    /// checked for UTF-8.
    Proto2,
    /// proto3 as google.golang.org/protobuf reads it: every singular field may be absent (zero
    /// or empty), a writer leaves out the fields that hold zero or empty, and a `string` field
    /// must be valid UTF-8. The labels of a [`MessageSpec`] then only say which fields repeat.
    Proto3,
}

/// A message declaration (the proto2 labels; under [`Syntax::Proto3`] `Required` and
/// `Optional` both mean a singular field that may be absent).
#[derive(Debug, PartialEq, Eq)]
pub struct MessageSpec {
    /// Message name as in goraft's `.proto`.
    pub name: &'static str,
    /// Its fields, in ascending number order.
    pub fields: &'static [FieldSpec],
}

/// Checks `buf` against `spec` the way Go's proto2 decoder would, collecting quirks.
///
/// Returns the quirks when Go would accept the message, the first error when it would not.
pub fn check(buf: &[u8], spec: &'static MessageSpec) -> Result<Vec<WireQuirk>, WireError> {
    check_as(buf, spec, Syntax::Proto2)
}

/// [`check`] under the rules of `syntax`.
pub fn check_as(
    buf: &[u8],
    spec: &'static MessageSpec,
    syntax: Syntax,
) -> Result<Vec<WireQuirk>, WireError> {
    let mut quirks = Vec::new();
    check_into(buf, spec, syntax, 0, &mut |q| quirks.push(q))?;
    Ok(quirks)
}

/// [`check`] without the list of quirks: whether Go's proto2 decoder accepts `buf`. It
/// allocates nothing, whatever the number of quirks (a hostile body may hold one per byte).
pub fn validate(buf: &[u8], spec: &'static MessageSpec) -> Result<(), WireError> {
    check_into(buf, spec, Syntax::Proto2, 0, &mut |_| {})
}

/// Whether a singular field's value is the zero a proto3 writer leaves out.
fn is_zero(value: WireValue<'_>, kind: Kind) -> bool {
    match (value, kind) {
        (_, Kind::Message(_)) => false,
        (WireValue::Varint(v) | WireValue::Fixed64(v), _) => v == 0,
        (WireValue::Fixed32(v), _) => v == 0,
        (WireValue::Bytes(b), _) => b.is_empty(),
    }
}

fn check_into(
    buf: &[u8],
    spec: &'static MessageSpec,
    syntax: Syntax,
    base: usize,
    quirks: &mut dyn FnMut(WireQuirk),
) -> Result<(), WireError> {
    let mut seen: u64 = 0;
    let mut last_number = 0;
    for field in Fields::new(buf) {
        let field = field?;
        let Some((i, fs)) = spec
            .fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.number == field.number)
        else {
            quirks(WireQuirk::UnknownField {
                offset: base + field.offset,
                field: field.number,
            });
            continue;
        };
        let expected_wt = match fs.kind {
            Kind::Varint => 0,
            _ => 2,
        };
        if field.value.wire_type() != expected_wt {
            return Err(WireError::WrongWireType {
                offset: base + field.offset,
                field: fs.name,
                found: field.value.wire_type(),
            });
        }
        if field.number < last_number {
            quirks(WireQuirk::OutOfOrder {
                offset: base + field.offset,
                field: fs.name,
            });
        }
        last_number = last_number.max(field.number);
        let bit = 1u64 << i.min(63);
        if seen & bit != 0 && fs.label != Label::Repeated {
            quirks(WireQuirk::DuplicateField {
                offset: base + field.offset,
                field: fs.name,
            });
        }
        seen |= bit;
        if syntax == Syntax::Proto3 && fs.label != Label::Repeated && is_zero(field.value, fs.kind)
        {
            quirks(WireQuirk::ZeroWritten {
                offset: base + field.offset,
                field: fs.name,
            });
        }
        if let WireValue::Bytes(bytes) = field.value {
            match fs.kind {
                Kind::String if std::str::from_utf8(bytes).is_err() => {
                    if syntax == Syntax::Proto3 {
                        return Err(WireError::InvalidUtf8 {
                            offset: base + field.offset,
                            field: fs.name,
                        });
                    }
                    quirks(WireQuirk::InvalidUtf8 {
                        offset: base + field.offset,
                        field: fs.name,
                    });
                }
                Kind::Message(nested) => {
                    let start = field.offset
                        + (bytes.as_ptr() as usize - buf[field.offset..].as_ptr() as usize);
                    // A nested error fails the whole message, so its quirks need no holding back.
                    check_into(bytes, nested, syntax, 0, &mut |q| {
                        quirks(shift(q, base + start))
                    })
                    .map_err(|e| WireError::Nested {
                        offset: base + start,
                        field: fs.name,
                        error: Box::new(e),
                    })?;
                }
                _ => {}
            }
        }
    }
    if syntax == Syntax::Proto3 {
        return Ok(());
    }
    if buf.is_empty() && spec.fields.iter().any(|f| f.label == Label::Required) {
        return Err(WireError::Empty);
    }
    for (i, fs) in spec.fields.iter().enumerate() {
        if fs.label == Label::Required && seen & (1u64 << i.min(63)) == 0 {
            return Err(WireError::MissingRequired {
                message: spec.name,
                field: fs.name,
            });
        }
    }
    Ok(())
}

fn shift(q: WireQuirk, by: usize) -> WireQuirk {
    match q {
        WireQuirk::UnknownField { offset, field } => WireQuirk::UnknownField {
            offset: offset + by,
            field,
        },
        WireQuirk::DuplicateField { offset, field } => WireQuirk::DuplicateField {
            offset: offset + by,
            field,
        },
        WireQuirk::OutOfOrder { offset, field } => WireQuirk::OutOfOrder {
            offset: offset + by,
            field,
        },
        WireQuirk::InvalidUtf8 { offset, field } => WireQuirk::InvalidUtf8 {
            offset: offset + by,
            field,
        },
        WireQuirk::ZeroWritten { offset, field } => WireQuirk::ZeroWritten {
            offset: offset + by,
            field,
        },
    }
}

/// A `LogEntry` body decoded without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireEntry<'a> {
    /// Field 1, Index.
    pub index: u64,
    /// Field 2, Term.
    pub term: u64,
    /// Field 3, CommandName (raw bytes; normally UTF-8).
    pub name: &'a [u8],
    /// Field 4, Command, when present.
    pub command: Option<&'a [u8]>,
    /// Whether the body is exactly what its dialect's writer writes: under proto2 fields 1-4
    /// once each, in order (4 only when there is a command); under proto3 the same order with
    /// every field that holds zero or empty left out. When false, [`check_as`] with
    /// [`LOG_ENTRY`] lists what differs.
    pub canonical: bool,
}

/// `message LogEntry` from goraft's protobuf/log_entry.proto.
pub static LOG_ENTRY: MessageSpec = MessageSpec {
    name: "LogEntry",
    fields: &[
        FieldSpec {
            number: 1,
            name: "Index",
            kind: Kind::Varint,
            label: Label::Required,
        },
        FieldSpec {
            number: 2,
            name: "Term",
            kind: Kind::Varint,
            label: Label::Required,
        },
        FieldSpec {
            number: 3,
            name: "CommandName",
            kind: Kind::String,
            label: Label::Required,
        },
        FieldSpec {
            number: 4,
            name: "Command",
            kind: Kind::Bytes,
            label: Label::Optional,
        },
    ],
};

/// Decodes a `LogEntry` body as Go's decoder would: the canonical layout on a fast path,
/// anything else field by field (last occurrence wins, unknown fields skipped).
#[inline]
pub fn decode_entry(body: &[u8]) -> Result<WireEntry<'_>, WireError> {
    if let Some(e) = decode_canonical(body) {
        return Ok(e);
    }
    decode_general(body)
}

/// The canonical layout only (fields 1-4 once each, in order, as goraft writes them), or `None`;
/// whole-log passes call it directly and leave anything else to [`decode_entry`].
#[inline(always)]
pub fn decode_canonical(body: &[u8]) -> Option<WireEntry<'_>> {
    let mut pos = 0;
    let expect = |tag: u8, pos: &mut usize| -> Option<()> {
        (body.get(*pos) == Some(&tag)).then(|| *pos += 1)
    };
    expect(0x08, &mut pos)?;
    let index = varint(body, &mut pos)?;
    expect(0x10, &mut pos)?;
    let term = varint(body, &mut pos)?;
    expect(0x1a, &mut pos)?;
    let len = varint(body, &mut pos)? as usize;
    let name = body.get(pos..pos.checked_add(len)?)?;
    pos += len;
    let command = if pos == body.len() {
        None
    } else {
        expect(0x22, &mut pos)?;
        let len = varint(body, &mut pos)? as usize;
        let c = body.get(pos..pos.checked_add(len)?)?;
        pos += len;
        Some(c)
    };
    (pos == body.len()).then_some(WireEntry {
        index,
        term,
        name,
        command,
        canonical: true,
    })
}

/// The fields of a `LogEntry` body as Go reads them (last occurrence wins, unknown fields
/// skipped), each `None` when absent.
type Found<'a> = (Option<u64>, Option<u64>, Option<&'a [u8]>, Option<&'a [u8]>);

fn entry_fields(body: &[u8]) -> Result<Found<'_>, WireError> {
    let (mut index, mut term, mut name, mut command) = (None, None, None, None);
    for field in Fields::new(body) {
        let field = field?;
        let name_of = |n| LOG_ENTRY.fields[n as usize - 1].name;
        match (field.number, field.value) {
            (1, WireValue::Varint(v)) => index = Some(v),
            (2, WireValue::Varint(v)) => term = Some(v),
            (3, WireValue::Bytes(b)) => name = Some((b, field.offset)),
            (4, WireValue::Bytes(b)) => command = Some(b),
            (n @ 1..=4, v) => {
                return Err(WireError::WrongWireType {
                    offset: field.offset,
                    field: name_of(n),
                    found: v.wire_type(),
                })
            }
            _ => {}
        }
    }
    Ok((index, term, name.map(|(b, _)| b), command))
}

fn decode_general(body: &[u8]) -> Result<WireEntry<'_>, WireError> {
    if body.is_empty() {
        return Err(WireError::Empty);
    }
    let (index, term, name, command) = entry_fields(body)?;
    let missing = |field| WireError::MissingRequired {
        message: "LogEntry",
        field,
    };
    Ok(WireEntry {
        index: index.ok_or(missing("Index"))?,
        term: term.ok_or(missing("Term"))?,
        name: name.ok_or(missing("CommandName"))?,
        command,
        canonical: false,
    })
}

/// Decodes a `LogEntry` body as the seaweedfs/raft fork's proto3 decoder
/// (google.golang.org/protobuf) would: an absent field is zero or empty, and a CommandName that
/// is not UTF-8 is an error. The layout the fork writes goes through a fast path
/// ([`decode_proto3_canonical`]), anything else field by field.
#[inline]
pub fn decode_entry_proto3(body: &[u8]) -> Result<WireEntry<'_>, WireError> {
    if let Some(e) = decode_proto3_canonical(body) {
        return Ok(e);
    }
    decode_general_proto3(body)
}

/// The proto3 layout only, as the fork writes it (fields in order, each written only when it
/// holds a non-zero or non-empty value, Index always non-zero, an ASCII CommandName), or `None`.
/// A body of a non-zero term with a command is the same bytes under both encodings, so this
/// reads those exactly as [`decode_canonical`] does.
#[inline(always)]
pub fn decode_proto3_canonical(body: &[u8]) -> Option<WireEntry<'_>> {
    let mut pos = 0;
    let next_is = |tag: u8, pos: &mut usize| -> bool {
        let hit = body.get(*pos) == Some(&tag);
        *pos += usize::from(hit);
        hit
    };
    if !next_is(0x08, &mut pos) {
        return None;
    }
    let index = varint(body, &mut pos).filter(|&v| v != 0)?;
    let term = if next_is(0x10, &mut pos) {
        varint(body, &mut pos).filter(|&v| v != 0)?
    } else {
        0
    };
    let name: &[u8] = if next_is(0x1a, &mut pos) {
        let len = varint(body, &mut pos)? as usize;
        let n = body.get(pos..pos.checked_add(len)?)?;
        pos += len;
        if n.is_empty() || std::str::from_utf8(n).is_err() {
            return None;
        }
        n
    } else {
        &[]
    };
    let command = if next_is(0x22, &mut pos) {
        let len = varint(body, &mut pos)? as usize;
        let c = body.get(pos..pos.checked_add(len)?)?;
        pos += len;
        if c.is_empty() {
            return None;
        }
        Some(c)
    } else {
        None
    };
    (pos == body.len()).then_some(WireEntry {
        index,
        term,
        name,
        command,
        canonical: true,
    })
}

fn decode_general_proto3(body: &[u8]) -> Result<WireEntry<'_>, WireError> {
    let (index, term, name, command) = entry_fields(body)?;
    // Go checks every occurrence of a string field, not only the one it keeps.
    let bad = Fields::new(body).filter_map(Result::ok).find(|f| {
        f.number == 3 && matches!(f.value, WireValue::Bytes(b) if std::str::from_utf8(b).is_err())
    });
    if let Some(f) = bad {
        return Err(WireError::InvalidUtf8 {
            offset: f.offset,
            field: "CommandName",
        });
    }
    let name = name.unwrap_or(&[]);
    Ok(WireEntry {
        index: index.unwrap_or(0),
        term: term.unwrap_or(0),
        name,
        command,
        canonical: false,
    })
}

/// Encodes a `LogEntry` body exactly as the seaweedfs/raft fork does (proto3): a field that
/// holds zero or empty is left out, so a term-0 entry has no Term and an empty or absent
/// command no Command.
pub fn encode_entry_proto3(
    index: u64,
    term: u64,
    name: &[u8],
    command: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    if index != 0 {
        out.push(0x08);
        write_varint(index, out);
    }
    if term != 0 {
        out.push(0x10);
        write_varint(term, out);
    }
    if !name.is_empty() {
        out.push(0x1a);
        write_varint(name.len() as u64, out);
        out.extend_from_slice(name);
    }
    if let Some(c) = command.filter(|c| !c.is_empty()) {
        out.push(0x22);
        write_varint(c.len() as u64, out);
        out.extend_from_slice(c);
    }
}

/// The length of [`encode_entry_proto3`]'s body.
pub fn proto3_entry_len(index: u64, term: u64, name: &[u8], command: Option<&[u8]>) -> usize {
    let field = |present: bool, len: usize| if present { 1 + len } else { 0 };
    let command = command.unwrap_or(&[]);
    field(index != 0, varint_len(index))
        + field(term != 0, varint_len(term))
        + field(!name.is_empty(), varint_len(name.len() as u64) + name.len())
        + field(
            !command.is_empty(),
            varint_len(command.len() as u64) + command.len(),
        )
}

/// Encodes a `LogEntry` body exactly as goraft does.
pub fn encode_entry(index: u64, term: u64, name: &[u8], command: Option<&[u8]>, out: &mut Vec<u8>) {
    out.push(0x08);
    write_varint(index, out);
    out.push(0x10);
    write_varint(term, out);
    out.push(0x1a);
    write_varint(name.len() as u64, out);
    out.extend_from_slice(name);
    if let Some(c) = command {
        out.push(0x22);
        write_varint(c.len() as u64, out);
        out.extend_from_slice(c);
    }
}

/// The encoded length of a varint.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests;
