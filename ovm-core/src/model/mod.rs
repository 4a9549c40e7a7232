//! The object model: plain, serializable data with invariants.
//!
//! Nothing in this module performs I/O or knows about drivers or the database. Cross-object rules
//! (a server is in at most one pool, MACs are unique, ...) are checked by [`Inventory`].

use serde::{Deserialize, Serialize};
use std::fmt;

mod cluster;
mod event;
mod ha;
mod inventory;
mod job;
mod load;
mod migration;
mod network;
mod pool;
mod server;
mod storage;
mod vm;

pub use cluster::*;
pub use event::*;
pub use ha::*;
pub use inventory::*;
pub use job::*;
pub use load::*;
pub use migration::*;
pub use network::*;
pub use pool::*;
pub use server::*;
pub use storage::*;
pub use vm::*;

/// Milliseconds since the Unix epoch.
pub type Timestamp = u64;

macro_rules! ids {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new random id.
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4())
            }
            /// The underlying UUID.
            pub fn uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                uuid::Uuid::parse_str(s)
                    .map($name)
                    .map_err(|e| crate::Error::invalid(stringify!($name), e.to_string()))
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> uuid::Uuid {
                id.0
            }
        }
    )*};
}

ids! {
    /// Id of a [`Server`].
    ServerId,
    /// Id of a [`ServerPool`].
    PoolId,
    /// Id of a [`FileServer`].
    FileServerId,
    /// Id of a [`StorageArray`].
    StorageArrayId,
    /// Id of a [`FileSystem`].
    FileSystemId,
    /// Id of a [`PhysicalDisk`].
    PhysicalDiskId,
    /// Id of an [`AccessGroup`].
    AccessGroupId,
    /// Id of a [`Repository`].
    RepositoryId,
    /// Id of a [`VirtualDisk`].
    VirtualDiskId,
    /// Id of a [`VirtualCdrom`].
    VirtualCdromId,
    /// Id of a [`Template`].
    TemplateId,
    /// Id of an [`Assembly`].
    AssemblyId,
    /// Id of a [`Network`].
    NetworkId,
    /// Id of a [`Port`].
    PortId,
    /// Id of a [`BondPort`].
    BondPortId,
    /// Id of a [`VlanInterface`].
    VlanInterfaceId,
    /// Id of a [`Vm`].
    VmId,
    /// Id of an [`AntiAffinityGroup`].
    AntiAffinityGroupId,
    /// Id of a [`Tag`].
    TagId,
    /// Id of a [`Job`].
    JobId,
    /// Id of an [`Event`].
    EventId,
}

macro_rules! object_kinds {
    ($($(#[$m:meta])* $variant:ident = $code:literal),* $(,)?) => {
        /// Every kind of object the manager knows, including jobs and events.
        ///
        /// The numbers are stable codes shared by every binding (the C enum `ovm_object_kind`,
        /// Python's `ObjectKind`): a code is never changed or reused; new kinds take new numbers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum ObjectKind {
            $($(#[$m])* $variant = $code,)*
        }

        impl ObjectKind {
            /// All kinds, in code order.
            pub const ALL: [ObjectKind; [$($code),*].len()] = [$(ObjectKind::$variant),*];

            /// The stable name used in the database and in messages.
            pub const fn name(self) -> &'static str {
                match self { $(ObjectKind::$variant => stringify!($variant),)* }
            }

            /// The stable numeric code of the kind (the C enum value).
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The kind with this code, if any.
            pub const fn from_code(code: u32) -> Option<ObjectKind> {
                match code { $($code => Some(ObjectKind::$variant),)* _ => None }
            }
        }
    };
}

object_kinds! {
    /// [`Server`]
    Server = 0,
    /// [`ServerPool`]
    ServerPool = 1,
    /// [`FileServer`]
    FileServer = 2,
    /// [`StorageArray`]
    StorageArray = 3,
    /// [`FileSystem`]
    FileSystem = 4,
    /// [`PhysicalDisk`]
    PhysicalDisk = 5,
    /// [`AccessGroup`]
    AccessGroup = 6,
    /// [`Repository`]
    Repository = 7,
    /// [`VirtualDisk`]
    VirtualDisk = 8,
    /// [`VirtualCdrom`]
    VirtualCdrom = 9,
    /// [`Template`]
    Template = 10,
    /// [`Assembly`]
    Assembly = 11,
    /// [`Network`]
    Network = 12,
    /// [`Port`]
    Port = 13,
    /// [`BondPort`]
    BondPort = 14,
    /// [`VlanInterface`]
    VlanInterface = 15,
    /// [`Vm`]
    Vm = 16,
    /// [`AntiAffinityGroup`]
    AntiAffinityGroup = 17,
    /// [`Tag`]
    Tag = 18,
    /// [`Job`]
    Job = 19,
    /// [`Event`]
    Event = 20,
}

impl ObjectKind {
    /// Parse a name produced by [`ObjectKind::name`].
    pub fn from_name(s: &str) -> Option<ObjectKind> {
        Self::ALL.iter().copied().find(|k| k.name() == s)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A reference to any object: its kind and UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct ObjectRef {
    /// Kind of the object.
    pub kind: ObjectKind,
    /// Its id.
    pub id: uuid::Uuid,
}

impl ObjectRef {
    /// A reference to `id` of `kind`.
    pub fn new(kind: ObjectKind, id: impl Into<uuid::Uuid>) -> Self {
        ObjectRef { kind, id: id.into() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// Behaviour shared by every inventory object.
pub trait ManagedObject:
    Clone + fmt::Debug + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static
{
    /// The object's kind.
    const KIND: ObjectKind;
    /// Its id as a UUID.
    fn uuid(&self) -> uuid::Uuid;
    /// Its name (unique per kind).
    fn name(&self) -> &str;
    /// A reference to it.
    fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(Self::KIND, self.uuid())
    }
    /// Wrap into [`Object`].
    fn into_object(self) -> Object;
    /// Unwrap from [`Object`].
    fn from_object(o: &Object) -> Option<&Self>;
    /// Check the object's own invariants (no cross-object rules).
    fn validate(&self) -> crate::Result<()> {
        validate_name(self.name())
    }
}

/// A host name or a bare IPv4/IPv6 address, as storage is reached: letters, digits, `-`, `.`, `_`
/// and `:`, starting with a letter, a digit or `:` (never `-`, which an external tool would take
/// for an option), at most 253 characters.
pub fn validate_host(field: &str, host: &str) -> crate::Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.starts_with(|c: char| c.is_ascii_alphanumeric() || c == ':')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(field, format!("{host:?} is not a host name or address")))
    }
}

/// Checks a user-supplied name: 1..=256 characters, no control characters.
pub fn validate_name(name: &str) -> crate::Result<()> {
    if name.trim().is_empty() {
        return Err(crate::Error::invalid("name", "must not be empty"));
    }
    if name.chars().count() > 256 {
        return Err(crate::Error::invalid("name", "must be at most 256 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::Error::invalid("name", "must not contain control characters"));
    }
    Ok(())
}

macro_rules! objects {
    ($($variant:ident($ty:ident, $id:ident)),* $(,)?) => {
        /// Any inventory object.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
        #[serde(tag = "kind", content = "object")]
        #[allow(clippy::large_enum_variant)]
        pub enum Object {
            $(
                #[doc = concat!("A [`", stringify!($ty), "`].")]
                $variant($ty),
            )*
        }

        impl Object {
            /// Kind of the object.
            pub fn kind(&self) -> ObjectKind {
                match self { $(Object::$variant(_) => ObjectKind::$variant,)* }
            }
            /// Its id.
            pub fn uuid(&self) -> uuid::Uuid {
                match self { $(Object::$variant(o) => o.id.0,)* }
            }
            /// Its name.
            pub fn name(&self) -> &str {
                match self { $(Object::$variant(o) => &o.name,)* }
            }
            /// A reference to it.
            pub fn object_ref(&self) -> ObjectRef {
                ObjectRef::new(self.kind(), self.uuid())
            }
            /// Check its own invariants.
            pub fn validate(&self) -> crate::Result<()> {
                match self { $(Object::$variant(o) => o.validate(),)* }
            }
        }

        $(
            impl ManagedObject for $ty {
                const KIND: ObjectKind = ObjectKind::$variant;
                fn uuid(&self) -> uuid::Uuid { self.id.0 }
                fn name(&self) -> &str { &self.name }
                fn into_object(self) -> Object { Object::$variant(self) }
                fn from_object(o: &Object) -> Option<&Self> {
                    match o { Object::$variant(x) => Some(x), #[allow(unreachable_patterns)] _ => None }
                }
                fn validate(&self) -> crate::Result<()> { self.check() }
            }
        )*
    };
}

objects! {
    Server(Server, ServerId),
    ServerPool(ServerPool, PoolId),
    FileServer(FileServer, FileServerId),
    StorageArray(StorageArray, StorageArrayId),
    FileSystem(FileSystem, FileSystemId),
    PhysicalDisk(PhysicalDisk, PhysicalDiskId),
    AccessGroup(AccessGroup, AccessGroupId),
    Repository(Repository, RepositoryId),
    VirtualDisk(VirtualDisk, VirtualDiskId),
    VirtualCdrom(VirtualCdrom, VirtualCdromId),
    Template(Template, TemplateId),
    Assembly(Assembly, AssemblyId),
    Network(Network, NetworkId),
    Port(Port, PortId),
    BondPort(BondPort, BondPortId),
    VlanInterface(VlanInterface, VlanInterfaceId),
    Vm(Vm, VmId),
    AntiAffinityGroup(AntiAffinityGroup, AntiAffinityGroupId),
    Tag(Tag, TagId),
}

/// A tag that can be attached to any object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Tag {
    /// Id.
    pub id: TagId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Objects carrying the tag.
    #[serde(default)]
    pub objects: Vec<ObjectRef>,
}

impl Tag {
    /// A new tag.
    pub fn new(name: impl Into<String>) -> Self {
        Tag { id: TagId::new(), name: name.into(), description: String::new(), objects: Vec::new() }
    }
    fn check(&self) -> crate::Result<()> {
        validate_name(&self.name)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kind_codes_are_unique_in_order_and_round_trip() {
        for (i, k) in ObjectKind::ALL.iter().enumerate() {
            assert_eq!(ObjectKind::from_code(k.code()), Some(*k));
            assert_eq!(ObjectKind::from_name(k.name()), Some(*k));
            if i > 0 {
                assert!(ObjectKind::ALL[i - 1].code() < k.code(), "{k:?} out of code order");
            }
        }
        assert_eq!(ObjectKind::from_code(u32::MAX), None);
        // The published numbers (the C ABI) never change.
        assert_eq!(ObjectKind::Server.code(), 0);
        assert_eq!(ObjectKind::Vm.code(), 16);
        assert_eq!(ObjectKind::Event.code(), 20);
    }
}
