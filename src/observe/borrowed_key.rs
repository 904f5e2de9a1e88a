//! Looking up a map by a borrowed view of its key: a handshake whose kind
//! is already counted finds it without building an owned key (strings
//! allocated and freed per handshake) first.
//!
//! std's `HashMap::get` takes any `Q` the key can `Borrow` as; a key can
//! lend itself as a trait object whose hash and equality are those of the
//! view, and the view implements the trait too. [`borrowed_key!`] writes
//! that trait and its impls for a key and its view; the key's own impl of
//! the trait (how it lends its fields) is written beside it.

/// `borrowed_key!(Key, View, Trait, method)`: declares `trait Trait {
/// fn method(&self) -> View<'_>; }` (which `Key` must implement), and
/// makes `Key` and `View` (`Copy + Eq + Hash`) hash and compare as the
/// view, so that a `HashMap<Key, _>` can be looked up with
/// `&view as &dyn Trait`.
macro_rules! borrowed_key {
    ($key:ty, $view:ident, $lend:ident, $method:ident) => {
        /// What the map is looked up by: its key or the key's borrowed
        /// view, hashed and compared as the latter.
        trait $lend {
            fn $method(&self) -> $view<'_>;
        }

        impl $lend for $view<'_> {
            fn $method(&self) -> $view<'_> {
                *self
            }
        }

        impl<'a> std::borrow::Borrow<dyn $lend + 'a> for $key {
            fn borrow(&self) -> &(dyn $lend + 'a) {
                self
            }
        }

        impl std::hash::Hash for dyn $lend + '_ {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(&self.$method(), state);
            }
        }

        impl PartialEq for dyn $lend + '_ {
            fn eq(&self, other: &Self) -> bool {
                self.$method() == other.$method()
            }
        }

        impl Eq for dyn $lend + '_ {}

        /// As its view, which `Borrow` requires.
        impl std::hash::Hash for $key {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(&self.$method(), state);
            }
        }
    };
}

pub(crate) use borrowed_key;
