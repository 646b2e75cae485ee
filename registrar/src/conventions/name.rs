//! The default service name: the image's own name, without registry,
//! repository path, tag or digest (`registry:5000/team/web:1.2` -> `web`),
//! as registrator derives it.

pub fn from_image(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::from_image;

    #[test]
    fn strips_registry_path_tag_and_digest() {
        assert_eq!(from_image("web"), "web");
        assert_eq!(from_image("web:1.2"), "web");
        assert_eq!(from_image("team/web:1.2"), "web");
        assert_eq!(from_image("registry.local:5000/team/web:1.2"), "web");
        assert_eq!(from_image("registry.local:5000/web"), "web");
        assert_eq!(from_image("web@sha256:abcd"), "web");
        assert_eq!(from_image("r:5000/a/b/web:1@sha256:abcd"), "web");
    }
}
