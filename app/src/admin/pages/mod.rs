//! The admin pages, one module per page.

pub mod audit;
pub mod jobs;
pub mod users;

use poem::Route;

pub fn routes(route: Route) -> Route {
    let route = users::routes(route);
    let route = audit::routes(route);
    jobs::routes(route)
}
