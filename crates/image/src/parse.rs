//! [`Image::parse`]: an image's metadata read ([`Image::read`]) and every check of what its
//! notes say, in order: the layout ([`Image::check_layout`]), the notes that refer to other
//! images or to the regions (`chain`, `shared`, `filemaps`, which read the image through
//! [`Image`]), then the records that refer to one another ([`Image::check_records`]). It sits
//! above those modules so that `image` itself needs none of them.

use crate::image::Image;
use crate::state::ProcessState;
use crate::ImageError;

impl<'a> Image<'a> {
    /// Checks the metadata block (`meta_len` bytes from offset 0) of a file of `file_len` bytes
    /// and decodes the state into `state`. Region data checksums are left to the caller, who
    /// holds the file.
    pub fn parse(meta: &'a [u8], file_len: u64, state: &mut ProcessState) -> Result<Image<'a>, ImageError> {
        let image = Image::read(meta, file_len, state)?;
        let seen = image.check_layout(state)?;
        crate::chain::check(&image)?;
        let bases = match image.chain() {
            Some(c) => c?.count,
            None => 0,
        };
        crate::shared::check_runs(&image, bases)?;
        crate::filemaps::check(&image)?;
        crate::shmfiles::check(&image)?;
        image.check_records(seen)?;
        Ok(image)
    }
}
