//! What handlers take from a request besides JSON: the caller, and images in any of the
//! accepted forms.

pub mod caller;
pub mod image;

pub use image::{IMAGE_FIELD, ImageForm, REFERENCE_FIELD};
