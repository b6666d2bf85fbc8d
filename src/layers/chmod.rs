//! `--chmod` modes of COPY and ADD: octal (`755`, `0644`, up to `7777`) or symbolic as chmod(1)
//! writes them (`u+x,g-w`, `a=rX`, `+x`, `go=u-w`), and how a mode changes each copied entry.
//!
//! BuildKit (frontend/dockerfile/dockerfile2llb/convert_copy.go) reads the value with
//! `strconv.ParseUint(s, 8, 32)` first; anything else goes to `mode.Parse` of
//! tonistiigi/dchapes-mode (BSD `setmode(3)` with umask 0), applied per entry by fsutil
//! (copy/copy_unix.go `copyFileInfo`) to the source's mode. This module follows that library's
//! parsing and application rules, including its quirks: `X` only counts with `+`, and `X` looks
//! at the entry's mode before any change.

use std::fmt;

const IS_UID: u32 = 0o4000;
const IS_GID: u32 = 0o2000;
const IS_TXT: u32 = 0o1000;
const RWXU: u32 = 0o700;
const RWXG: u32 = 0o070;
const RWXO: u32 = 0o007;
const R_ALL: u32 = 0o444;
const W_ALL: u32 = 0o222;
const X_ALL: u32 = 0o111;
const R_USER: u32 = 0o400;
const R_GROUP: u32 = 0o040;
const R_OTHER: u32 = 0o004;
const STANDARD: u32 = IS_UID | IS_GID | RWXU | RWXG | RWXO;
/// Every bit a mode may hold.
const ALL: u32 = 0o7777;

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An octal mode: every entry gets exactly these bits.
    Octal(u32),
    /// A symbolic mode: applied to each entry's own mode.
    Symbolic(SymbolicMode),
}

/// A parsed symbolic mode (`u+x,g-w`): the text as written and the bit operations it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolicMode {
    text: String,
    cmds: Vec<BitCmd>,
}

/// One operation of a symbolic mode (dchapes-mode's `bitcmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitCmd {
    /// Set these bits.
    Add(u32),
    /// Clear these bits.
    Remove(u32),
    /// Set these bits when the entry is a directory or already executable by anyone.
    X(u32),
    /// Copy the user (`u`), group (`g`) or other (`o`) bits of the mode being built to the
    /// classes in `to` (`u`, `g`, `o` flags), masked by `bits`: clear first when `clear`, then
    /// set when `set`.
    Copy {
        from: u8,
        to_u: bool,
        to_g: bool,
        to_o: bool,
        bits: u32,
        clear: bool,
        set: bool,
    },
}

/// Why a `--chmod` value is not a mode; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChmodError(pub String);

impl Chmod {
    /// Parse a `--chmod` value as BuildKit does: octal digits up to `7777`, else a symbolic
    /// mode. A value that starts with a digit but is not a valid octal mode is an error, as is
    /// an empty value.
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        let numeric = || {
            ChmodError(
                "expected an octal mode between 0 and 7777 (e.g. 755 or 0644), or a symbolic mode such as u+x,g-w or a=rX"
                    .into(),
            )
        };
        if s.is_empty() {
            return Err(numeric());
        }
        if s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let digits = s.trim_start_matches('0');
            if digits.len() > 4 {
                return Err(numeric());
            }
            let mode = u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 8)
                .map_err(|_| numeric())?;
            if mode > ALL {
                return Err(numeric());
            }
            return Ok(Chmod::Octal(mode));
        }
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            // dchapes-mode reads a leading digit as an octal number: a `strconv.NumError`,
            // which BuildKit reports as a bad octal mode.
            return Err(numeric());
        }
        let cmds = parse_symbolic(s).ok_or_else(|| {
            ChmodError(
                "invalid symbolic mode: expected [ugoa...][+-=][rwxXst...|ugo][,...] as chmod(1) reads it (e.g. u+x,g-w or a=rX), or an octal mode such as 755"
                    .into(),
            )
        })?;
        Ok(Chmod::Symbolic(SymbolicMode {
            text: s.to_string(),
            cmds,
        }))
    }

    /// The mode of a directory a copy creates for its destination (fsutil's `MkdirAll` takes
    /// the numeric `--chmod`; with a symbolic one, `ci.Mode` is unset and it uses 0755).
    pub fn dir_mode(&self) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(_) => 0o755,
        }
    }

    /// The mode an entry gets: `src_mode` is its mode in the source (permission, setuid,
    /// setgid and sticky bits), `is_dir` whether it is a directory. Symlinks keep 0777 and
    /// never come here.
    pub fn apply(&self, src_mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => m & ALL,
            Chmod::Symbolic(s) => s.apply(src_mode & ALL, is_dir),
        }
    }
}

impl fmt::Display for Chmod {
    /// The value as BuildKit prints it in history: octal without a leading zero added, symbolic
    /// as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:o}"),
            Chmod::Symbolic(s) => f.write_str(&s.text),
        }
    }
}

impl SymbolicMode {
    /// The mode as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// dchapes-mode's `Set.Apply` on permission bits.
    fn apply(&self, old: u32, is_dir: bool) -> u32 {
        let mut new = old;
        for cmd in &self.cmds {
            match *cmd {
                BitCmd::Add(b) => new |= b,
                BitCmd::Remove(b) => new &= !b,
                BitCmd::X(b) => {
                    if old & X_ALL != 0 || is_dir {
                        new |= b;
                    }
                }
                BitCmd::Copy {
                    from,
                    to_u,
                    to_g,
                    to_o,
                    bits,
                    clear,
                    set,
                } => {
                    let value = match from {
                        b'u' => (new & RWXU) >> 6,
                        b'g' => (new & RWXG) >> 3,
                        _ => new & RWXO,
                    };
                    if clear {
                        let clr = if set { RWXO } else { value };
                        if to_u {
                            new &= !((clr << 6) & bits);
                        }
                        if to_g {
                            new &= !((clr << 3) & bits);
                        }
                        if to_o {
                            new &= !(clr & bits);
                        }
                    }
                    if set {
                        if to_u {
                            new |= (value << 6) & bits;
                        }
                        if to_g {
                            new |= (value << 3) & bits;
                        }
                        if to_o {
                            new |= value & bits;
                        }
                    }
                }
            }
        }
        new & ALL
    }
}

/// dchapes-mode's `addcmd` with umask 0 (the mask is all bits).
fn add_cmd(cmds: &mut Vec<BitCmd>, op: u8, who: u32, arg: u32, copy_op: u8) {
    let mask = u32::from(u16::MAX);
    match op {
        b'=' | b'+' | b'-' | b'X' => {
            let mut op = op;
            if op == b'=' {
                cmds.push(BitCmd::Remove(if who != 0 { who } else { STANDARD }));
                op = b'+';
            }
            let bits = if who != 0 { who & arg } else { mask & arg };
            cmds.push(match op {
                b'+' => BitCmd::Add(bits),
                b'-' => BitCmd::Remove(bits),
                _ => BitCmd::X(bits),
            });
        }
        from => {
            let (to_u, to_g, to_o, bits) = if who != 0 {
                (
                    who & R_USER != 0,
                    who & R_GROUP != 0,
                    who & R_OTHER != 0,
                    u32::MAX,
                )
            } else {
                (true, true, true, mask)
            };
            cmds.push(BitCmd::Copy {
                from,
                to_u,
                to_g,
                to_o,
                bits,
                clear: matches!(copy_op, b'-' | b'='),
                set: matches!(copy_op, b'+' | b'='),
            });
        }
    }
}

/// dchapes-mode's `ParseWithUmask(s, 0)` for a symbolic mode; `None` on a syntax error.
fn parse_symbolic(s: &str) -> Option<Vec<BitCmd>> {
    let b = s.as_bytes();
    let mut i = 0usize;
    let mut cmds = Vec::new();
    let mut equal_op_done = false;
    loop {
        let mut who = 0u32;
        loop {
            match b.get(i)? {
                b'a' => who |= STANDARD,
                b'u' => who |= IS_UID | RWXU,
                b'g' => who |= IS_GID | RWXG,
                b'o' => who |= RWXO,
                _ => break,
            }
            i += 1;
        }
        'getop: loop {
            let op = *b.get(i)?;
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_op_done = false,
                _ => return None,
            }
            who &= !IS_TXT;
            let mut perm = 0u32;
            let mut perm_x = 0u32;
            loop {
                let c = b.get(i).copied().unwrap_or(0);
                match c {
                    b'r' => perm |= R_ALL,
                    b's' => {
                        if who == 0 || who & !RWXO != 0 {
                            perm |= IS_UID | IS_GID;
                        }
                    }
                    b't' => {
                        if who == 0 || who & !RWXO != 0 {
                            who |= IS_TXT;
                            perm |= IS_TXT;
                        }
                    }
                    b'w' => perm |= W_ALL,
                    b'X' => {
                        if op == b'+' {
                            perm_x = X_ALL;
                        }
                    }
                    b'x' => perm |= X_ALL,
                    b'u' | b'g' | b'o' => {
                        if perm != 0 {
                            add_cmd(&mut cmds, op, who, perm, 0);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_op_done = true;
                        }
                        if perm_x != 0 {
                            add_cmd(&mut cmds, b'X', who, perm_x, 0);
                            perm_x = 0;
                        }
                        add_cmd(&mut cmds, c, who, 0, op);
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_op_done) {
                            if op == b'=' {
                                equal_op_done = true;
                            }
                            add_cmd(&mut cmds, op, who, perm, 0);
                        }
                        if perm_x != 0 {
                            add_cmd(&mut cmds, b'X', who, perm_x, 0);
                        }
                        break;
                    }
                }
                i += 1;
            }
            if i >= b.len() {
                return Some(compress(cmds));
            }
            if b[i] != b',' {
                continue 'getop;
            }
            i += 1;
            break;
        }
    }
}

/// dchapes-mode's `compress`: runs of `+`, `-` and `X` become at most one of each.
fn compress(cmds: Vec<BitCmd>) -> Vec<BitCmd> {
    let mut out = Vec::with_capacity(cmds.len());
    let mut i = 0;
    while i < cmds.len() {
        if matches!(cmds[i], BitCmd::Copy { .. }) {
            out.push(cmds[i]);
            i += 1;
            continue;
        }
        let (mut set, mut clr, mut x) = (0u32, 0u32, 0u32);
        while let Some(c) = cmds.get(i) {
            match *c {
                BitCmd::Remove(b) => {
                    clr |= b;
                    set &= !b;
                    x &= !b;
                }
                BitCmd::Add(b) => {
                    set |= b;
                    clr &= !b;
                    x &= !b;
                }
                BitCmd::X(b) => x |= b & !set,
                BitCmd::Copy { .. } => break,
            }
            i += 1;
        }
        if clr != 0 {
            out.push(BitCmd::Remove(clr));
        }
        if set != 0 {
            out.push(BitCmd::Add(set));
        }
        if x != 0 {
            out.push(BitCmd::X(x));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &str, old: u32, is_dir: bool) -> u32 {
        Chmod::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .apply(old, is_dir)
    }

    #[test]
    fn octal() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0644").unwrap(), Chmod::Octal(0o644));
        assert_eq!(Chmod::parse("4755").unwrap(), Chmod::Octal(0o4755));
        assert_eq!(Chmod::parse("00000755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0").unwrap(), Chmod::Octal(0));
        assert_eq!(apply("640", 0o777, false), 0o640);
        assert_eq!(apply("1777", 0o755, true), 0o1777);
        for bad in ["", "8", "9", "75a", "77777", "010000", "0x1f", "1e3"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Chmod::parse("755").unwrap().to_string(), "755");
    }

    /// dchapes-mode's `TestParseError`.
    #[test]
    fn syntax_errors() {
        for bad in [
            ",", "q+r", "z", "u", "g", "o", "go", "u+r,", "+r,", "u+r;g", "a", "-,",
        ] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
        for good in ["+", "-", "=", "u=", "a=rX", "u+x,g-w", "+x", "ug+rw,o-rwx"] {
            assert!(Chmod::parse(good).is_ok(), "{good}");
        }
        let e = Chmod::parse("u!x").unwrap_err().to_string();
        assert!(e.contains("symbolic mode"), "{e}");
    }

    /// dchapes-mode's `TestApply` cases with umask 0 (directories marked).
    #[test]
    fn apply_like_dchapes_mode() {
        let cases: &[(u32, bool, u32, &str)] = &[
            (0o777, false, 0o000, "="),
            (0o777, false, 0o777, "+"),
            (0o421, false, 0o421, "+"),
            (0o777, false, 0o777, "-"),
            (0o421, false, 0o1421, "+t"),
            (0o1421, false, 0o421, "-t"),
            (0o000, false, 0o400, "u+r"),
            (0o000, false, 0o200, "u+w"),
            (0o000, false, 0o100, "u+x"),
            (0o000, false, 0o000, "u+X"),
            (0o001, false, 0o101, "u+X"),
            (0o000, true, 0o100, "u+X"),
            (0o000, false, 0o4000, "u+s"),
            (0o000, false, 0o040, "g+r"),
            (0o100, false, 0o110, "g+X"),
            (0o000, true, 0o010, "g+X"),
            (0o000, false, 0o2000, "g+s"),
            (0o000, false, 0o004, "o+r"),
            (0o100, false, 0o101, "o+X"),
            (0o000, false, 0o000, "o+s"),
            (0o000, false, 0o421, "0421"),
            (0o000, false, 0o7421, "07421"),
            (0o000, false, 0o444, "+r"),
            (0o000, false, 0o222, "+w"),
            (0o000, false, 0o111, "+x"),
            (0o000, false, 0o000, "+X"),
            (0o010, false, 0o111, "+X"),
            (0o000, true, 0o111, "+X"),
            (0o000, false, 0o6000, "+s"),
            (0o777, false, 0o333, "-r"),
            (0o777, false, 0o555, "-w"),
            (0o777, false, 0o666, "-x"),
            (0o777, false, 0o777, "-X"),
            (0o777, true, 0o777, "-X"),
            (0o6777, false, 0o777, "-s"),
            (0o777, false, 0o377, "u-r"),
            (0o777, true, 0o777, "u-X"),
            (0o4777, false, 0o777, "u-s"),
            (0o000, false, 0o600, "u=rw"),
            (0o777, false, 0o677, "u=rw"),
            (0o777, false, 0o077, "u="),
            (0o000, false, 0o666, "=rw"),
            (0o777, false, 0o666, "=rw"),
            (0o042, false, 0o442, "u=g"),
            (0o742, false, 0o442, "u=g"),
            (0o722, false, 0o022, "u=g-w"),
            (0o742, false, 0o442, "u=g-w"),
            (0o762, false, 0o462, "u=g-w"),
            (0o772, false, 0o572, "u=g-w"),
            (0o021, false, 0o121, "u+o"),
            (0o021, false, 0o221, "u+g"),
            (0o021, false, 0o321, "u+go"),
            (0o000, false, 0o764, "a=r,ug=rw,u+x"),
            (0o777, false, 0o764, "a=r,ug=rw,u+x"),
            (0o000, false, 0o1624, "o+r,g+w,a+t,g-s,u+og"),
            (0o2100, false, 0o1724, "o+r,g+w,a+t,g-s,u+og"),
            (0o6000, true, 0o5624, "o+r,g+w,a+t,g-s,u+og"),
            (0o777, false, 0o644, "644"),
            (0o777, false, 0o755, "go-w"),
            (0o766, false, 0o777, "=rw,+X"),
            (0o000, false, 0o755, "u=rwx,go=rx"),
            (0o000, false, 0o755, "u=rwx,go=u-w"),
            (0o777, false, 0o700, "go="),
            (0o770, false, 0o755, "go=u-w"),
            (0o670, false, 0o644, "go=u-w"),
            (0o570, false, 0o555, "go=u-w"),
            (0o370, false, 0o311, "go=u-w"),
        ];
        for &(old, is_dir, want, s) in cases {
            assert_eq!(
                apply(s, old, is_dir),
                want,
                "{s} on {old:o} (dir: {is_dir}): got {:o}, want {want:o}",
                apply(s, old, is_dir)
            );
        }
    }

    #[test]
    fn dockerfile_examples() {
        // `X` with `=` is ignored by dchapes-mode: a=rX is a=r.
        assert_eq!(apply("a=rX", 0o755, true), 0o444);
        assert_eq!(apply("a+rX", 0o600, false), 0o644);
        assert_eq!(apply("a+rX", 0o700, false), 0o755);
        assert_eq!(apply("a+rX", 0o700, true), 0o755);
        assert_eq!(apply("u+x,g-w", 0o664, false), 0o744);
        let c = Chmod::parse("u+x,g-w").unwrap();
        assert_eq!(c.to_string(), "u+x,g-w");
    }
}
