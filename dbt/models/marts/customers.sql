with customers as (
    select * from {{ ref('stg_retail__customers') }}
),

orders as (
    select * from {{ ref('orders') }}
),

customer_orders as (
    select
        customer_id,
        count(*) as order_count,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) filter (where is_revenue) as revenue_order_count,
        min(ordered_at) filter (where is_revenue) as first_revenue_order_at,
        max(ordered_at) filter (where is_revenue) as last_revenue_order_at,
        sum(revenue) as lifetime_revenue
    from orders
    group by customer_id
),

final as (
    select
        customers.customer_id,
        customers.first_name,
        customers.last_name,
        customers.first_name || ' ' || customers.last_name as customer_name,
        customers.email,
        customers.city,
        customers.country,
        customers.signed_up_at,
        coalesce(customer_orders.order_count, 0) as order_count,
        customer_orders.first_order_at,
        customer_orders.last_order_at,
        coalesce(customer_orders.revenue_order_count, 0) as revenue_order_count,
        customer_orders.first_revenue_order_at,
        customer_orders.last_revenue_order_at,
        coalesce(customer_orders.lifetime_revenue, 0) as lifetime_revenue
    from customers
    left join customer_orders on customers.customer_id = customer_orders.customer_id
)

select * from final
