//! A user's subordinate ids from `/etc/subuid` or `/etc/subgid`: every range listed for it,
//! in file order, mapped one after the other after container id 0 (the user's own id), as
//! podman maps them (`newuidmap <pid> 0 <uid> 1 1 <start₁> <count₁> <1+count₁> <start₂>
//! <count₂> …`). A user given a second range (`usermod --add-subuids` again) gets container
//! ids past the first one's end, rather than a `chown` that fails.
//!
//! Kept out: a range of 0 ids, one overlapping an earlier range or the user's own id (the
//! kernel refuses overlapping lines in a map), ranges past the 339th (a map holds at most 340
//! lines, `user_namespaces(7)`, one being the user's own) and ids past `u32::MAX - 1`.

use std::fmt::Write as _;

/// At most this many ranges besides the user's own id.
const MAX_RANGES: usize = 339;

/// The ranges, `(first host id, count)`, container ids `1..=total()` in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubIds(Vec<(u32, u32)>);

impl SubIds {
    /// The ranges of the lines for `name` or numeric `id` in a subuid/subgid file's `text`;
    /// `own` is the user's id in that file's kind (uid or gid). `None` without any.
    pub(crate) fn parse(text: &str, name: Option<&str>, id: u32, own: u32) -> Option<SubIds> {
        let mut kept: Vec<(u32, u32)> = Vec::new();
        let mut total: u64 = 0;
        for l in text.lines() {
            let mut f = l.trim().split(':');
            let (Some(who), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(start), Ok(count)) = (start.trim().parse::<u32>(), count.trim().parse::<u32>())
            else {
                continue;
            };
            let matches = Some(who) == name || who.parse::<u32>().ok() == Some(id);
            let end = u64::from(start) + u64::from(count);
            let overlaps = |(s, c): (u32, u32)| {
                u64::from(start) < u64::from(s) + u64::from(c) && u64::from(s) < end
            };
            if !matches
                || count == 0
                || end > u64::from(u32::MAX)
                || overlaps((own, 1))
                || kept.iter().any(|&r| overlaps(r))
                || kept.len() == MAX_RANGES
                || total + u64::from(count) > u64::from(u32::MAX - 1)
            {
                continue;
            }
            total += u64::from(count);
            kept.push((start, count));
        }
        (!kept.is_empty()).then_some(SubIds(kept))
    }

    /// How many container ids the ranges give (`1..=total`).
    pub(crate) fn total(&self) -> u32 {
        // parse() keeps the sum under u32::MAX.
        self.0.iter().map(|&(_, c)| c).sum()
    }

    /// The container id of host id `host`, if a range holds it.
    pub(crate) fn to_image(&self, host: u32) -> Option<u32> {
        let mut first = 1u32;
        for &(start, count) in &self.0 {
            if host >= start && host - start < count {
                return Some(first + (host - start));
            }
            first += count;
        }
        None
    }

    /// The arguments after the pid of `newuidmap`/`newgidmap`: container 0 is `own`, then
    /// each range.
    pub(crate) fn map_args(&self, own: u32) -> Vec<String> {
        let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
        let mut first = 1u32;
        for &(start, count) in &self.0 {
            args.extend([first.to_string(), start.to_string(), count.to_string()]);
            first += count;
        }
        args
    }

    /// `start-count[-start-count…]`, for the snapshot directory's name (one range gives the
    /// name it always had).
    pub(crate) fn key(&self) -> String {
        let mut s = String::new();
        for (i, (start, count)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "-" };
            let _ = write!(s, "{sep}{start}-{count}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_of_the_user_in_file_order() {
        let text = "other:200000:65536\n# x\nbob:100000:1000\n1000:300000:10\nbob:400000:65536\n";
        let s = SubIds::parse(text, Some("bob"), 1000, 1000).unwrap();
        assert_eq!(s.0, [(100000, 1000), (300000, 10), (400000, 65536)]);
        assert_eq!(s.total(), 1000 + 10 + 65536);
        assert_eq!(s.to_image(100000), Some(1));
        assert_eq!(s.to_image(100999), Some(1000));
        assert_eq!(s.to_image(300000), Some(1001));
        assert_eq!(s.to_image(400000), Some(1011));
        assert_eq!(s.to_image(200000), None);
        assert_eq!(
            s.map_args(1000).join(" "),
            "0 1000 1 1 100000 1000 1001 300000 10 1011 400000 65536"
        );
        assert_eq!(s.key(), "100000-1000-300000-10-400000-65536");
        let one = SubIds::parse("bob:100000:65536\n", Some("bob"), 1, 1).unwrap();
        assert_eq!(one.key(), "100000-65536");
        assert_eq!(SubIds::parse(text, Some("eve"), 1001, 1001), None);
    }

    #[test]
    fn ranges_the_kernel_would_refuse_are_left_out() {
        // Empty, overlapping an earlier one, holding the user's own id, past u32.
        let text = "bob:100000:0\nbob:100000:65536\nbob:165000:100\nbob:1000:5\nbob:4294967290:100\nbob:200000:10\n";
        let s = SubIds::parse(text, Some("bob"), 1000, 1000).unwrap();
        assert_eq!(s.0, [(100000, 65536), (200000, 10)]);
        let many: String = (0..400u32)
            .map(|i| format!("bob:{}:1\n", 100000 + 2 * i))
            .collect();
        assert_eq!(
            SubIds::parse(&many, Some("bob"), 1, 1).unwrap().0.len(),
            MAX_RANGES
        );
    }
}
