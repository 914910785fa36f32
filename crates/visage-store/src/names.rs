//! Enums stored by name. Each variant has one name, used in the database, in JSON and in
//! logs; [`named_enum!`] writes the conversions once, so the names cannot drift apart.

/// A name that no variant of the enum has (in a stored row: a bug or tampering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being read, e.g. "audit action".
    pub kind: &'static str,
    pub name: String,
}

/// Defines a fieldless enum whose variants are stored by the given names: `as_str`, `ALL`,
/// `Display`, `FromStr` and `TryFrom<&str>` (failing with [`UnknownName`]), and serde as the
/// name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name it is stored and shown under.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $( $text => Ok(Self::$variant), )+
                    _ => Err($crate::names::UnknownName { kind: $kind, name: name.to_owned() }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::names::UnknownName;
            fn try_from(name: &str) -> Result<Self, Self::Error> {
                name.parse()
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::names::UnknownName;
            fn try_from(name: String) -> Result<Self, Self::Error> {
                name.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }
    };
}
pub(crate) use named_enum;
