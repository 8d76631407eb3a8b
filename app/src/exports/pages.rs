use poem::Route;

pub fn routes(route: Route) -> Route {
    route
}
