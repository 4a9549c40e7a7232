//! xenstore node permissions (`n0`, `r1`, `w2`, `b3`).
//!
//! A node's permission list starts with its owner (who always has full
//! access) and the access granted to every domain not listed; further
//! entries grant access to specific domains.

use std::fmt;
use std::str::FromStr;

use super::error::XenError;

/// The access one permission entry grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// One permission entry: a domain and its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain id.
    pub domid: u32,
    /// The access granted.
    pub access: Access,
}

impl Perm {
    /// Builds an entry.
    pub fn new(domid: u32, access: Access) -> Perm {
        Perm { domid, access }
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

impl FromStr for Perm {
    type Err = XenError;

    fn from_str(s: &str) -> Result<Perm, XenError> {
        let bad = || XenError::InvalidArgument(format!("bad xenstore permission {s:?}"));
        let mut chars = s.chars();
        let access = match chars.next() {
            Some('n') => Access::None,
            Some('r') => Access::Read,
            Some('w') => Access::Write,
            Some('b') => Access::Both,
            _ => return Err(bad()),
        };
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let domid = digits.parse::<u32>().map_err(|_| bad())?;
        Ok(Perm { domid, access })
    }
}

/// The permission list of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Perms {
    /// The owner, and the access of all domains not listed in `acl`.
    pub owner: Perm,
    /// Access granted to specific domains.
    pub acl: Vec<Perm>,
}

impl Perms {
    /// Owner `domid`, everyone else `others`.
    pub fn owned_by(domid: u32, others: Access) -> Perms {
        Perms { owner: Perm::new(domid, others), acl: Vec::new() }
    }

    /// Adds an entry for one domain.
    pub fn grant(mut self, domid: u32, access: Access) -> Perms {
        self.acl.push(Perm::new(domid, access));
        self
    }

    /// All entries in wire order (owner first).
    pub fn entries(&self) -> impl Iterator<Item = &Perm> {
        std::iter::once(&self.owner).chain(self.acl.iter())
    }

    /// Parses the strings of a `GET_PERMS` reply.
    pub fn from_strings<S: AsRef<str>>(parts: &[S]) -> Result<Perms, XenError> {
        let mut it = parts.iter().map(|p| p.as_ref().parse::<Perm>());
        let owner =
            it.next().ok_or_else(|| XenError::InvalidArgument("empty xenstore permission list".into()))??;
        let acl = it.collect::<Result<Vec<_>, _>>()?;
        Ok(Perms { owner, acl })
    }

    /// The strings of a `SET_PERMS` request.
    pub fn to_strings(&self) -> Vec<String> {
        self.entries().map(Perm::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let p = Perms::from_strings(&["n0", "r1", "w2", "b32752"]).unwrap();
        assert_eq!(p.owner, Perm::new(0, Access::None));
        assert_eq!(
            p.acl,
            vec![Perm::new(1, Access::Read), Perm::new(2, Access::Write), Perm::new(32752, Access::Both)]
        );
        assert_eq!(p.to_strings(), vec!["n0", "r1", "w2", "b32752"]);
        assert_eq!(Perms::owned_by(5, Access::Read).grant(0, Access::Both).to_strings(), vec!["r5", "b0"]);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "x1", "r", "r-1", "r1a", "r 1", "r99999999999", "R1"] {
            assert!(bad.parse::<Perm>().is_err(), "{bad:?}");
        }
        assert!(Perms::from_strings::<&str>(&[]).is_err());
        assert!(Perms::from_strings(&["r0", "zz"]).is_err());
    }
}
